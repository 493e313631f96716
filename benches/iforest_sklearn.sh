#!/usr/bin/env bash
# Isolation forest: train + score time of surveil's forest against scikit-learn's
# IsolationForest, single-threaded, on the ODDS sets and a 100,000 x 20 synthetic set.
#
#   benches/iforest_sklearn.sh [--rows N] [--dims D] [--repeats R]
#
# Creates a virtualenv with scikit-learn under the cargo target folder (once), builds the
# `odds` example in release mode, and prints both sides' times and the ratio.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/iforest-sklearn-venv"
data="${SURVEIL_DATA:-$root/../shared/datasets}/odds"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import sklearn" 2>/dev/null; then
    "$venv/bin/pip" install --quiet scikit-learn
fi

(cd "$root" && cargo build --quiet --release --example odds)

# One thread on both sides.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

"$venv/bin/python" "$root/benches/iforest_sklearn.py" \
    --rust "$target/release/examples/odds" --out "$target/iforest-sklearn-data" "$@" \
    "$data"/{cardio,glass,ionosphere,pima,wbc}.csv
