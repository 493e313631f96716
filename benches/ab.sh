#!/usr/bin/env bash
# Throughput of two builds of `surveil run` on the same input, runs interleaved (A, B, A, B...)
# so that both see the same machine load; prints each build's median wall time and B / A.
#
#   benches/ab.sh BINARY_A BINARY_B INPUT [WORKERS] [-- RUN_ARGS...]
#   REPEAT=15 benches/ab.sh old/surveil target/release/surveil target/bench/day/events.csv 2
#
# The two builds must give the same alerts (checked on the last run, `detected_at` aside).
set -euo pipefail
command -v bc >/dev/null || { echo "benches/ab.sh needs bc (apt-get install bc)" >&2; exit 1; }
A="$1"; B="$2"; INPUT="$3"; shift 3
WORKERS=1
if [ $# -gt 0 ] && [ "$1" != "--" ]; then WORKERS="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
REPEAT="${REPEAT:-11}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() {
    local bin="$1" out="$2" start end
    shift 2
    start=$(date +%s.%N)
    "$bin" run -q -w "$WORKERS" "$INPUT" --out "$out" "$@" >/dev/null 2>&1 || { echo "$bin failed" >&2; exit 1; }
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}
: > "$OUT/a.times"; : > "$OUT/b.times"
for _ in $(seq "$REPEAT"); do
    run "$A" "$OUT/a" "$@" >> "$OUT/a.times"
    run "$B" "$OUT/b" "$@" >> "$OUT/b.times"
done
strip() { sed 's/"detected_at":"[^"]*",//' "$1/alerts.jsonl"; }
if ! cmp -s <(strip "$OUT/a") <(strip "$OUT/b"); then
    echo "the two builds give different alerts" >&2
    exit 1
fi
a=$(median < "$OUT/a.times"); b=$(median < "$OUT/b.times")
printf 'workers %s, %s runs each: A median %.3f s, B median %.3f s, B/A %.3f\n' "$WORKERS" "$REPEAT" "$a" "$b" "$(echo "$b / $a" | bc -l)"
