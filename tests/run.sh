#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, doc and end-to-end tests.
# Installs (once, from PyPI) and starts the servers the tests need on 127.0.0.1 — the
# S3-compatible moto server — and stops them afterwards; installs headless Chromium and
# chromedriver (Debian packages) for the web UI test when they are missing and this runs
# as root or under CI. Usage: tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
    # Keep the build between CI runs on the same machine (a fresh clone has no target/).
    export CARGO_TARGET_DIR="${HOME}/.cache/weir-target"
fi

step() { printf '\n==> %s\n' "$*"; }

# The bundled RocksDB (weir-state's RocksDB backend) is built through bindgen, which
# needs libclang. A fresh Debian machine lacks it: install it when apt can.
if command -v apt-get >/dev/null && ! dpkg -s libclang-dev >/dev/null 2>&1; then
    step "installing libclang-dev (bindgen, for the bundled RocksDB)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libclang-dev
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
# The test profile, so that the lint build and the test build share their dependencies
# (RocksDB's bundled C++ alone is ~14 min on 2 cores) instead of building them twice.
cargo clippy --profile test --workspace --all-targets --locked -- -D warnings

step "browser for the web UI test (Debian chromium, chromium-driver)"
if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
    echo "chromium and chromedriver present"
elif [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
elif [ "${CI:-}" = "true" ] && command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
else
    echo "chromium or chromedriver is missing and this is neither root nor CI: the web UI test will fail (apt-get install chromium chromium-driver)" >&2
fi

step "starting test servers (tests/services.sh)"
eval "$(tests/services.sh start)"
trap 'tests/services.sh stop' EXIT
# Tests that need a server fail instead of skipping when it is missing.
export WEIR_REQUIRE_SERVICES=1

step "unit, property and end-to-end tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast --lib --bins --tests
fi

step "doc tests"
cargo test --workspace --locked --doc

step "all tests passed"
