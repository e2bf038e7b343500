#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property, doc and end-to-end tests.
# Starts whatever servers the tests need (none yet for the engine core) and stops
# them afterwards. Usage: tests/run.sh   (from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
    # Keep the build between CI runs on the same machine (a fresh clone has no target/).
    export CARGO_TARGET_DIR="${HOME}/.cache/weir-target"
fi

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit, property and end-to-end tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast --lib --bins --tests
fi

step "doc tests"
cargo test --workspace --locked --doc

step "all tests passed"
