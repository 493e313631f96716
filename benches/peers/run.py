"""Runs the comparison job in surveil and each peer on the same trades file, checks every peer's
output against surveil's, and prints one table of wall time, trades/s and the ratio to surveil.

Called by run.sh (which prepares the virtualenv and the release build); see its header.
"""

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import polars as pl

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PY = sys.executable

WINDOW_COLUMNS = {"account": pl.Utf8, "window_start_ns": pl.Int64, "count": pl.Int64, "sum_qty": pl.Int64,
                  "vwap": pl.Float64}
ALERT_COLUMNS = {"account": pl.Utf8, "window_start_ns": pl.Int64, "sum_qty": pl.Int64}
SELF_COLUMNS = {"time_ns": pl.Int64, "account": pl.Utf8, "instrument": pl.Utf8, "qty": pl.Int64,
                "price": pl.Float64}


def tree_rss(root):
    """Resident memory of a process and all its descendants, bytes."""
    children = {}
    rss = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


def timed(command, env=None, cwd=None):
    """Runs a command; returns (wall seconds, peak RSS bytes, stdout). The peak is the largest of
    the process tree's summed RSS, sampled every 50 ms (PyFlink's JVM is a child of Python)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
        peak = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid != 0:
                break
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-3000:]}")
    # wait4's ru_maxrss is not used: it keeps the parent's (Python's) size from before exec.
    return wall, peak, stdout


def read_parts(path, prefix, columns):
    """Every file under `path` whose name starts with `prefix` (recursively, hidden in-progress
    files included, as Flink's filesystem sink leaves them), headers dropped."""
    files = []
    if os.path.isfile(path):
        files = [path]
    else:
        for directory, _, names in os.walk(path):
            for name in names:
                relative = os.path.relpath(os.path.join(directory, name), path)
                if relative.lstrip(".").startswith(prefix) and not name.endswith(".crc"):
                    files.append(os.path.join(directory, name))
    text = []
    for file in sorted(files):
        with open(file) as f:
            for line in f:
                if line.startswith("account,") or line.startswith("time_ns,") or not line.strip():
                    continue
                text.append(line if line.endswith("\n") else line + "\n")
    if not text:
        return pl.DataFrame(schema=columns)
    return pl.read_csv(io.StringIO("".join(text)), has_header=False, new_columns=list(columns), schema=columns)


def compare(job, reference_dir, peer_dir):
    """None if the peer's output equals surveil's, else what differs."""
    if job == "self_trades":
        a = read_parts(reference_dir, "self_trades", SELF_COLUMNS).with_columns(pl.col("price").round(2)).sort(
            pl.all())
        b = read_parts(peer_dir, "self_trades", SELF_COLUMNS).with_columns(pl.col("price").round(2)).sort(pl.all())
        return None if a.equals(b) else f"self-trades differ: {a.height} vs {b.height} rows"
    a = read_parts(reference_dir, "windows", WINDOW_COLUMNS)
    b = read_parts(peer_dir, "windows", WINDOW_COLUMNS)
    if a.height != b.height:
        return f"{b.height} windows, surveil has {a.height}"
    joined = a.join(b, on=["account", "window_start_ns"], how="inner", suffix="_peer")
    if joined.height != a.height:
        return f"{a.height - joined.height} windows of surveil missing"
    bad = joined.filter(
        (pl.col("count") != pl.col("count_peer"))
        | (pl.col("sum_qty") != pl.col("sum_qty_peer"))
        | ((pl.col("vwap") - pl.col("vwap_peer")).abs() > 1e-9 * pl.col("vwap").abs())
    )
    if bad.height:
        return f"{bad.height} windows differ, e.g. {bad.head(3).to_dicts()}"
    alerts_a = read_parts(reference_dir, "alerts", ALERT_COLUMNS).sort(pl.all())
    alerts_b = read_parts(peer_dir, "alerts", ALERT_COLUMNS).sort(pl.all())
    if not alerts_a.equals(alerts_b):
        return f"alerts differ: {alerts_b.height} vs surveil's {alerts_a.height}"
    return None


def machine():
    """The state of the machine now: ratios are only comparable on a machine in the same state."""
    with open("/proc/meminfo") as f:
        total_kb = int(f.readline().split()[1])
    return {"cores": os.cpu_count(), "memory_gib": round(total_kb / 2**20, 1), "load_average": os.getloadavg()}


def save(args, trades, size, rows, machine_at_start):
    """Writes the results so far (a long run that is stopped keeps what it measured)."""
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "peers.json"), "w") as f:
        state = {"at_start": machine_at_start, "at_end": machine()}
        json.dump({"input": args.input, "trades": trades, "bytes": size, "machine": state, "rows": rows}, f, indent=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True, help="the release build of examples/bench")
    parser.add_argument("--input", required=True)
    parser.add_argument("--work", default=os.path.join(ROOT, "target", "peers"))
    parser.add_argument("--results", default=os.path.join(ROOT, "target", "bench-results"))
    parser.add_argument("--threshold", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the fast engines (median)")
    parser.add_argument("--engines", default="surveil,polars,polars-dynamic,duckdb,bytewax,flink")
    parser.add_argument("--jobs", default="windows,self_trades")
    parser.add_argument("--slow-jobs", default="windows",
                        help="jobs Bytewax runs (about a minute per million rows each)")
    args = parser.parse_args()
    engines = args.engines.split(",")
    trades = sum(1 for _ in open(args.input)) - 1
    size = os.path.getsize(args.input)
    print(f"input {args.input}: {trades:,} trades, {size / 1e6:.0f} MB", flush=True)

    cases = []  # (engine label, engine, workers, repeat, command builder)
    def surveil(workers):
        return lambda job, out: ([args.bench, "job", "--input", args.input, "--workers", str(workers), "--out", out,
                                  "--threshold", str(args.threshold), "--job", job.replace("_", "-")], None, None)
    def engine(name, parallelism=0):
        return lambda job, out: ([PY, os.path.join(HERE, "engines.py"), name, job, args.input, out, "--threshold",
                                  str(args.threshold), "--parallelism", str(parallelism)], None, None)
    def bytewax(processes):
        def command(job, out):
            env = dict(os.environ, PEERS_INPUT=os.path.abspath(args.input), PEERS_OUT=out, PEERS_JOB=job,
                       PEERS_THRESHOLD=str(args.threshold), PYTHONPATH=HERE)
            if processes == 1:
                return [PY, "-m", "bytewax.run", "bytewax_flow:flow"], env, HERE
            return [PY, "-m", "bytewax.testing", "bytewax_flow:flow", "-p", str(processes)], env, HERE
        return command
    if "surveil" in engines:
        cases += [("surveil", 1, args.repeat, surveil(1)), ("surveil", 2, args.repeat, surveil(2))]
    if "polars" in engines:
        cases.append(("Polars (group_by)", 2, args.repeat, engine("polars")))
    if "polars-dynamic" in engines:
        cases.append(("Polars (group_by_dynamic)", 2, args.repeat, engine("polars-dynamic")))
    if "duckdb" in engines:
        cases.append(("DuckDB", 2, args.repeat, engine("duckdb")))
    if "bytewax" in engines:
        cases += [("Bytewax", 1, 1, bytewax(1)), ("Bytewax", 2, 1, bytewax(2))]
    if "flink" in engines:
        cases += [("PyFlink", 1, 1, engine("flink", 1)), ("PyFlink", 2, 1, engine("flink", 2))]

    rows = []
    machine_at_start = machine()
    for job in args.jobs.split(","):
        reference = None
        for label, workers, repeat, build in cases:
            if job == "self_trades" and "dynamic" in label:
                continue  # the same filter as plain Polars
            if label == "Bytewax" and job not in args.slow_jobs.split(","):
                continue
            out = os.path.join(os.path.abspath(args.work), f"out-{job}-{label.split()[0].lower()}-{label}-{workers}".replace(" ", "_")
                               .replace("(", "").replace(")", ""))
            runs = []
            error = None
            for _ in range(repeat):
                shutil.rmtree(out, ignore_errors=True)
                os.makedirs(out, exist_ok=True)
                command, env, cwd = build(job, out)
                try:
                    wall, peak, stdout = timed(command, env, cwd)
                    runs.append((wall, peak, stdout.strip().splitlines()[-1:] or [""]))
                except Exception as e:  # a peer that cannot run is recorded, not fatal
                    error = str(e).strip().splitlines()[-1][:300] if str(e).strip() else repr(e)
                    break
            row = {"job": job, "system": label, "workers": workers, "trades": trades}
            if runs:
                runs.sort(key=lambda r: r[0])
                wall, peak, last = runs[len(runs) // 2]
                row.update(wall_seconds=wall, trades_per_second=trades / wall, peak_rss_bytes=peak, runs=len(runs))
                try:
                    row["inside"] = json.loads(last[0])
                    # surveil reports its own VmHWM, exact where 50 ms samples may miss the peak.
                    if row["inside"].get("peak_rss_bytes"):
                        row["peak_rss_bytes"] = row["inside"]["peak_rss_bytes"]
                except (ValueError, IndexError):
                    pass
                if label == "surveil" and workers == 1:
                    reference = out
                    row["check"] = "reference"
                elif reference is None:
                    row["check"] = "no surveil reference"
                else:
                    row["check"] = compare(job, reference, out) or "same output"
            else:
                row["error"] = error
            rows.append(row)
            save(args, trades, size, rows, machine_at_start)
            shown = f"{row['wall_seconds']:.2f} s" if "wall_seconds" in row else f"FAILED: {row['error']}"
            print(f"  {job:<12} {label:<26} {workers} {shown}  {row.get('check', '')}", flush=True)

    # Ratios against surveil in the same run: same worker count, and surveil's best.
    for job in args.jobs.split(","):
        ours = {r["workers"]: r["wall_seconds"] for r in rows if r["job"] == job and r["system"] == "surveil"
                and "wall_seconds" in r}
        best = min(ours.values()) if ours else None
        for r in rows:
            if r["job"] == job and "wall_seconds" in r and best:
                r["ratio_same_workers"] = r["wall_seconds"] / ours.get(r["workers"], best)
                r["ratio_to_best"] = r["wall_seconds"] / best

    print()
    print(f"| job | system | workers | wall s | trades/s | × surveil (same workers) | × surveil (best) | peak RSS MiB | output |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "wall_seconds" not in r:
            print(f"| {r['job']} | {r['system']} | {r['workers']} | – | – | – | – | – | failed: {r['error']} |")
            continue
        rss = f"{r['peak_rss_bytes'] / 2**20:.0f}"
        print(f"| {r['job']} | {r['system']} | {r['workers']} | {r['wall_seconds']:.2f} | "
              f"{r['trades_per_second'] / 1e6:.2f} M | {r.get('ratio_same_workers', 0):.1f} | "
              f"{r.get('ratio_to_best', 0):.1f} | {rss} | {r['check']} |")
    save(args, trades, size, rows, machine_at_start)
    print(f"\nwrote {os.path.join(args.results, 'peers.json')}")


if __name__ == "__main__":
    main()
