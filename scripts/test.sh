#!/usr/bin/env bash
# The test command (README.md): formatting, lints, then every test tier.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
