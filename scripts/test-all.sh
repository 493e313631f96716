#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and doc tests.
# Needs only the Rust toolchain and the shared datasets folder (../shared/datasets beside the
# project, or SURVEIL_DATA). Missing datasets fail the run; they are never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

data="${SURVEIL_DATA:-../shared/datasets}"
if [ ! -d "$data/lobster" ]; then
    echo "error: shared datasets not found at $data (set SURVEIL_DATA)" >&2
    exit 1
fi
export SURVEIL_DATA="$(cd "$data" && pwd)"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets
echo "== doc tests"
cargo test --workspace --doc
echo "== fuzz smoke: every parser for 15 s (longer runs: scripts/fuzz.sh SECONDS)"
scripts/fuzz.sh 15
echo "== polars oracle (separate crate: polars builds for minutes, so it is outside the workspace)"
cargo fmt --manifest-path oracles/Cargo.toml -- --check
cargo clippy --manifest-path oracles/Cargo.toml --all-targets -- -D warnings
cargo test --manifest-path oracles/Cargo.toml
