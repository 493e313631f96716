#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and doc tests.
# Needs the Rust toolchain and the shared datasets folder (../shared/datasets beside the
# project, or SURVEIL_DATA); installs Debian's influxdb package when influxd is missing, and
# moto and pyarrow from PyPI when they are missing. Missing
# datasets fail the run; they are never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

data="${SURVEIL_DATA:-../shared/datasets}"
if [ ! -d "$data/lobster" ]; then
    echo "error: shared datasets not found at $data (set SURVEIL_DATA)" >&2
    exit 1
fi
export SURVEIL_DATA="$(cd "$data" && pwd)"

# The time-series sink is tested against a real InfluxDB 1.6 from Debian's packages, which the
# tests start themselves on 127.0.0.1.
if ! command -v influxd >/dev/null 2>&1; then
    echo "== installing influxdb (Debian's package) for the time-series tests"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq influxdb >/dev/null
fi

# The Parquet archive is tested against moto's S3 server (on 127.0.0.1, over TLS) and read
# back by pyarrow, both from PyPI.
if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c "import pyarrow, boto3" >/dev/null 2>&1; then
    echo "== installing moto[server] and pyarrow (PyPI) for the archive tests"
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.1' 'pyarrow==26.0.1'
fi

# A run from a clean checkout gains nothing from incremental caches, which take gigabytes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

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
echo "== disk used by build outputs: $(du -sh target 2>/dev/null | cut -f1)"
