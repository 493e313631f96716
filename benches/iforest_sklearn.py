"""Times scikit-learn's IsolationForest against surveil's isolation forest on the same data.

Both train 100 trees of 256 rows on all rows of each file and score all rows, single-threaded;
CSV reading is not timed. Each side reports its best of N runs. The data: the given ODDS CSV
files and a seeded synthetic set (100,000 x 20 by default), written once as CSV for both.

Usage (benches/iforest_sklearn.sh sets this up):
    python iforest_sklearn.py --rust BINARY --out DIR [--rows N] [--dims D] [--repeats R] FILE.csv...
"""

import argparse
import os
import subprocess
import time
import warnings

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest


def synthetic(path, rows, dims, seed=42):
    """Gaussian rows with 1% uniform outliers over a wider box; features then a 0/1 label."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, dims))
    outliers = rng.random(rows) < 0.01
    x[outliers] = rng.uniform(-6.0, 6.0, (int(outliers.sum()), dims))
    header = ",".join([f"x{i}" for i in range(dims)] + ["label"])
    np.savetxt(path, np.column_stack([x, outliers.astype(float)]), delimiter=",", header=header,
               comments="", fmt="%.17g")


def time_sklearn(path, repeats):
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    x = data[:, :-1]
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        forest = IsolationForest(n_estimators=100, max_samples=256, n_jobs=1, random_state=0).fit(x)
        fitted = time.perf_counter()
        forest.score_samples(x)
        done = time.perf_counter()
        if best is None or done - start < best[0]:
            best = (done - start, fitted - start, done - fitted)
    return x.shape, best


def time_rust(binary, paths, repeats):
    out = subprocess.run([binary, "--time", "--repeats", str(repeats), *paths], check=True,
                         capture_output=True, text=True).stdout
    times = {}
    for line in out.splitlines()[1:]:
        name, _rows, _dims, fit, score, total = line.split()
        times[name] = (float(total), float(fit), float(score))
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rust", required=True, help="the odds example binary (release build)")
    parser.add_argument("--out", required=True, help="folder for the synthetic CSV")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="max_samples")

    os.makedirs(args.out, exist_ok=True)
    synth = os.path.join(args.out, f"synthetic_{args.rows}x{args.dims}.csv")
    if not os.path.exists(synth):
        synthetic(synth, args.rows, args.dims)
    paths = list(args.files) + [synth]

    rust = time_rust(args.rust, paths, args.repeats)
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}; best of {args.repeats}; seconds")
    print(f"{'data':<24} {'rows':>7} {'dims':>4} {'sklearn fit':>11} {'score':>8} {'total':>8} "
          f"{'rust fit':>9} {'score':>8} {'total':>8} {'ratio':>7}")
    for path in paths:
        (rows, dims), (total, fit, score) = time_sklearn(path, args.repeats)
        name = os.path.splitext(os.path.basename(path))[0]
        r_total, r_fit, r_score = rust[name]
        print(f"{name:<24} {rows:>7} {dims:>4} {fit:>11.4f} {score:>8.4f} {total:>8.4f} "
              f"{r_fit:>9.5f} {r_score:>8.5f} {r_total:>8.5f} {total / r_total:>6.1f}x")


if __name__ == "__main__":
    main()
