#!/usr/bin/env bash
# The comparison with other engines on one trades file, all measured in the same run.
#
#   benches/peers/run.sh [TRADES] [run.py options...]     # default 2,000,000 trades
#
# Installs Polars, DuckDB, Bytewax, PyFlink (`apache-flink`, which bundles the Flink runtime;
# needs Java 17) and matplotlib from PyPI into target/peers-venv, builds the release harness,
# writes target/peers/trades-N.csv (10,000 accounts) once, runs every engine on it, checks each
# peer's output against surveil's, prints the table and writes target/bench-results/peers.json.
# Options after TRADES go to run.py: e.g. --engines surveil,polars,duckdb (skip the slow ones),
# --repeat 5, --jobs windows. A peer that fails to install or run is reported and skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
TRADES="${1:-2000000}"
shift || true
VENV=target/peers-venv
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

if [ ! -x "$VENV/bin/python" ]; then
    python3.11 -m venv "$VENV" || python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q polars duckdb matplotlib
"$VENV/bin/pip" install -q bytewax || echo "bytewax did not install; it will be reported as failed" >&2
"$VENV/bin/pip" install -q apache-flink || echo "apache-flink did not install; it will be reported as failed" >&2

cargo build --release --quiet --example bench
BENCH="$CARGO_TARGET_DIR/release/examples/bench"
INPUT="target/peers/trades-$TRADES.csv"
[ -f "$INPUT" ] || "$BENCH" trades --out "$INPUT" --trades "$TRADES" --accounts 10000

"$VENV/bin/python" benches/peers/run.py --bench "$BENCH" --input "$INPUT" "$@"
