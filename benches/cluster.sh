#!/usr/bin/env bash
# Throughput of `surveil run` by layout: 1 process of 1 and 2 workers, 2 processes of 1 and 2
# workers (on 127.0.0.1), over the same generated day, with the one-worker run as the
# baseline measured in the same run.
#
#   benches/cluster.sh [EVENTS]        # default 10,000,000 generated events
#
# Reports the median wall time of REPEAT runs of each layout (from the first process started
# to the last one ended), events/s, the speed-up over 1 x 1, and process 0's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-10000000}"
REPEAT="${REPEAT:-3}"
WORK="${BENCH_DIR:-target/bench}"
mkdir -p "$WORK"

cargo build --release --quiet -p surveil-cli
BIN=target/release/surveil

DAY="$WORK/day-$EVENTS"
if [ ! -f "$DAY/events.csv" ]; then
    "$BIN" generate --events "$EVENTS" --out "$DAY"
fi
FILE="$DAY/events.csv"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

free_ports() { # two free loopback ports, one per line
    python3 -c "
import socket
s=[socket.socket() for _ in range(2)]
for x in s: x.bind(('127.0.0.1',0))
print('\n'.join('127.0.0.1:%d' % x.getsockname()[1] for x in s))"
}

layout() { # processes workers -> prints: median seconds, events, process 0's peak MiB
    local processes=$1 workers=$2 times=()
    for _ in $(seq "$REPEAT"); do
        rm -rf "$WORK/cluster-out" "$WORK/cluster-peer"
        local t0; t0=$(now)
        if [ "$processes" = 1 ]; then
            "$BIN" run -q -w "$workers" --out "$WORK/cluster-out" "$FILE"
        else
            free_ports > "$WORK/hosts"
            "$BIN" run -q -n 2 -p 1 -h "$WORK/hosts" -w "$workers" --out "$WORK/cluster-peer" "$FILE" > /dev/null &
            local peer=$!
            "$BIN" run -q -n 2 -p 0 -h "$WORK/hosts" -w "$workers" --out "$WORK/cluster-out" "$FILE" > /dev/null
            wait "$peer"
        fi
        local t1; t1=$(now)
        times+=("$(python3 -c "print($t1 - $t0)")")
    done
    echo "$(printf '%s\n' "${times[@]}" | median) $(python3 -c "import json;s=json.load(open('$WORK/cluster-out/summary.json'));print(s['events'], s['peak_rss_bytes']//1048576)")"
}

printf '%-10s %8s %12s %9s %12s %9s %9s\n' processes workers events seconds events/s speed-up peak_MiB
base=""
for spec in "1 1" "1 2" "2 1" "2 2"; do
    read -r processes workers <<< "$spec"
    read -r seconds events peak <<< "$(layout "$processes" "$workers")"
    [ -z "$base" ] && base=$seconds
    printf '%-10s %8s %12s %9.2f %12.0f %9.2f %9s\n' "$processes" "$((processes * workers))" "$events" "$seconds" \
        "$(python3 -c "print($events / $seconds)")" "$(python3 -c "print($base / $seconds)")" "$peak"
done
