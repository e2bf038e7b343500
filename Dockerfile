# The weir image: one binary for every role (`weir coordinator`, `weir worker`,
# `weir serve`, `weir run`, ...). Multi-stage: built with the Rust toolchain and
# RocksDB's C++ (about 25 minutes on 2 cores), run on a slim Debian.
#
#   docker build -t weir:dev .
#   docker run --rm weir:dev --help
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --features rocksdb --bin weir \
 && cp target/release/weir /usr/local/bin/weir

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --home-dir /var/lib/weir weir
COPY --from=build /usr/local/bin/weir /usr/local/bin/weir
USER weir
WORKDIR /var/lib/weir
ENTRYPOINT ["weir"]
CMD ["--help"]
