#!/usr/bin/env bash
# Memory over a long input: DAYS copies of a generated day, each shifted by one more day of event
# time (DAYS x 2 M lines), run plain and gzipped on one and two workers while the resident set
# is sampled every 0.5 s. Memory is bounded when the resident set at the end is within 10 % of
# the resident set once the first day has been read (10 % of the run's time). With two workers
# the buffered records grow until the workers' skew reaches the in-flight bound, so the table also
# gives the resident set at a third of the run.
#
#   benches/soak.sh [DAYS]         # default 10 (20 M lines, about 1.9 GB plain)
#
# SOAK_EVENTS sets the size of the day (default 2000000); SOAK_PLAIN_TWO=1 runs only the plain
# input on two workers. The day's own configuration (its reference data and session calendar)
# is used. SOAK_BIN runs another build of `surveil` (to compare two builds on the same input).
set -euo pipefail
cd "$(dirname "$0")/.."
DAYS="${1:-10}"
WORK="${BENCH_DIR:-target/bench}"
mkdir -p "$WORK"
cargo build --release --quiet
BIN="${SOAK_BIN:-target/release/surveil}"

EVENTS="${SOAK_EVENTS:-2000000}"
DAY="$WORK/day-$EVENTS"
[ -f "$DAY/events.csv" ] || "$BIN" generate --events "$EVENTS" --out "$DAY"
LONG="$WORK/soak-$EVENTS-$DAYS.csv"
if [ ! -f "$LONG" ]; then
    python3 - "$DAY/events.csv" "$LONG" "$DAYS" <<'PY'
import sys
source, target, days = sys.argv[1], sys.argv[2], int(sys.argv[3])
DAY = 86_400 * 10**9
with open(source, 'rb') as f:
    header = f.readline()
    lines = f.read().split(b'\n')
if lines and lines[-1] == b'':
    lines.pop()
with open(target, 'wb') as out:
    out.write(header)
    for d in range(days):
        shift = d * DAY
        out.write(b'\n'.join(str(int(l[:l.index(b',')]) + shift).encode() + l[l.index(b','):] for l in lines) + b'\n')
PY
fi
inputs=("$LONG" "$LONG.gz")
worker_counts=(1 2)
if [ "${SOAK_PLAIN_TWO:-0}" = 1 ]; then
    inputs=("$LONG")
    worker_counts=(2)
else
    [ -f "$LONG.gz" ] || gzip -1 -c "$LONG" > "$LONG.gz"
fi

# Runs the job and samples VmRSS (kB) every 0.5 s into $1.
sample() {
    local out=$1; shift
    "$@" & local pid=$!
    : > "$out"
    while kill -0 "$pid" 2>/dev/null; do
        awk '/VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null >> "$out" || true
        sleep 0.5
    done
    wait "$pid"
}

printf '| input | workers | seconds | RSS at 10 %% (MB) | at 33 %% | at the end | end / 10 %% | end / 33 %% | peak (MB) |\n|---|---|---|---|---|---|---|---|---|\n'
for input in "${inputs[@]}"; do
    for workers in "${worker_counts[@]}"; do
        samples="$WORK/soak-rss-$workers.txt"
        start=$(date +%s.%N)
        sample "$samples" "$BIN" run -q --workers "$workers" --config "$DAY/surveil.toml" --out "$WORK/soak-out" "$input"
        end=$(date +%s.%N)
        peak=$(python3 -c "import json;print(json.load(open('$WORK/soak-out/summary.json'))['peak_rss_bytes']/1e6)")
        python3 - "$samples" "$input" "$workers" "$start" "$end" "$peak" <<'PY'
import sys
samples = [int(x) for x in open(sys.argv[1]) if x.strip()]
name, workers, start, end, peak = sys.argv[2].rsplit('/', 1)[-1], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
first = samples[max(1, len(samples) // 10)] / 1e3
third = samples[len(samples) // 3] / 1e3
last = samples[-1] / 1e3
print(f"| {name} | {workers} | {end - start:.1f} | {first:.0f} | {third:.0f} | {last:.0f} | {last / first:.2f} | {last / third:.2f} | {peak:.0f} |")
PY
    done
done
