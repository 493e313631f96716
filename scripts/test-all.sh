#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and doc tests.
# Needs the Rust toolchain and the shared datasets folder (../shared/datasets beside the
# project, or SURVEIL_DATA); installs Debian's influxdb and stunnel4 packages when they are
# missing, moto and pyarrow from PyPI when they are missing, and the tansu broker from
# crates.io. Missing datasets fail the run; they are never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

data="${SURVEIL_DATA:-../shared/datasets}"
if [ ! -d "$data/lobster" ]; then
    echo "error: shared datasets not found at $data (set SURVEIL_DATA)" >&2
    exit 1
fi
export SURVEIL_DATA="$(cd "$data" && pwd)"

# From Debian's packages: the time-series sink is tested against a real InfluxDB 1.6, and the
# Kafka tests reach their broker over TLS through stunnel; the tests start both on 127.0.0.1.
packages=()
if ! command -v influxd >/dev/null 2>&1; then packages+=(influxdb); fi
if ! command -v stunnel >/dev/null 2>&1; then packages+=(stunnel4); fi
if [ ${#packages[@]} -gt 0 ]; then
    echo "== installing ${packages[*]} (Debian's packages) for the time-series and Kafka tests"
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# The Parquet archive is tested against moto's S3 server (on 127.0.0.1, over TLS) and read
# back by pyarrow, both from PyPI.
if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c "import pyarrow, boto3" >/dev/null 2>&1; then
    echo "== installing moto[server] and pyarrow (PyPI) for the archive tests"
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.1' 'pyarrow==26.0.1'
fi

# The Kafka source and sinks are tested against a real Kafka-protocol broker: tansu from
# crates.io, built once per machine (about 15 minutes on 2 cores) and kept under
# ~/.cache/surveil; the tests start it themselves on 127.0.0.1.
tansu_root="${SURVEIL_TOOLS:-$HOME/.cache/surveil}/tansu"
if [ ! -x "$tansu_root/bin/tansu" ]; then
    echo "== installing tansu 0.6.0 (a Kafka-protocol broker, crates.io) for the Kafka tests, once per machine"
    cargo install tansu --version 0.6.0 --locked --features libsql --root "$tansu_root" --quiet
fi
export SURVEIL_TANSU="$tansu_root/bin/tansu"

# A run from a clean checkout gains nothing from incremental caches, which take gigabytes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# The workspace's build outputs take about 4 GB, and up to about 9 GB with the fuzz targets and
# the polars oracle.
# A disk that fills while linking kills the linker with a bus error, which names no cause: say
# so first.
free_kb="$(df -Pk . | awk 'NR == 2 {print $4}')"
if [ -n "$free_kb" ] && [ "$free_kb" -lt $((10 * 1024 * 1024)) ]; then
    echo "warning: $((free_kb / 1024)) MB free on this disk; the build needs up to about 9 GB (a linker" \
        "killed by a bus error means the disk filled)" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets
echo "== doc tests"
cargo test --workspace --doc
echo "== benchmark gate: the default job against a floor run in the same process (docs/benchmarks.md)"
# The surveil command's features, as the test build above compiled the library with them.
cargo run --quiet -p surveil --features tools,http,archive,kafka-tls,metrics --example bench -- gate
echo "== fuzz smoke: every parser for 15 s (longer runs: scripts/fuzz.sh SECONDS)"
scripts/fuzz.sh 15
echo "== polars oracle (separate crate: polars builds for minutes, so it is outside the workspace)"
cargo fmt --manifest-path oracles/Cargo.toml -- --check
cargo clippy --manifest-path oracles/Cargo.toml --all-targets -- -D warnings
cargo test --manifest-path oracles/Cargo.toml
echo "== disk used by build outputs: $(du -sh target 2>/dev/null | cut -f1)"
