#!/usr/bin/env bash
# End-to-end Kafka throughput, measured in one run on one machine: the bundled day read from
# its file, the same day read from a topic of 4 partitions on a tansu broker (127.0.0.1, SQLite
# storage), and the broker's own rates (publishing the day, and a consumer that only reads it).
# Usage: scripts/bench-kafka.sh [EVENTS_FILE] [WORKERS]   (results: docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0

tansu="${SURVEIL_TANSU:-${SURVEIL_TOOLS:-$HOME/.cache/surveil}/tansu/bin/tansu}"
if [ ! -x "$tansu" ]; then
    echo "error: no tansu at $tansu (scripts/test-all.sh installs it)" >&2
    exit 1
fi
cargo build --release --quiet -p surveil-cli
cargo build --release --quiet -p surveil --example kafka_drain --features kafka
surveil=target/release/surveil
day="${1:-datasets/generated/default/events.csv}"
workers="${2:-2}"
if [ ! -f "$day" ]; then
    "$surveil" generate --out "$(dirname "$day")" >/dev/null
fi
config="$(dirname "$day")/surveil.toml"
config_args=()
if [ -f "$config" ]; then config_args=(--config "$config"); fi

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
broker="127.0.0.1:$port"
(cd "$work" && exec "$tansu" broker --listener-url "tcp://$broker" --advertised-listener-url "tcp://$broker" \
    --storage-engine sqlite://tansu.db >"$work/tansu.log" 2>&1) &
tansu_pid=$!
trap 'kill $tansu_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done

seconds() { python3 -c 'import sys, time; print(f"{time.time():.3f}")'; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

echo "== $day, $workers workers, tansu on $broker"
t0=$(seconds)
"$surveil" kafka produce --topic day --partitions 4 --brokers "$broker" "${config_args[@]}" "$day"
t1=$(seconds)
echo "publish: $(elapsed "$t0" "$t1") s"
target/release/examples/kafka_drain "$broker" day
t2=$(seconds)
"$surveil" run --quiet -w "$workers" "${config_args[@]}" --out "$work/file" "$day"
t3=$(seconds)
"$surveil" run --quiet -w "$workers" "${config_args[@]}" --out "$work/topic" --kafka day --to-end --brokers "$broker"
t4=$(seconds)
python3 - "$work" "$(elapsed "$t2" "$t3")" "$(elapsed "$t3" "$t4")" <<'PY'
import json, sys
work, file_s, topic_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
f = json.load(open(f"{work}/file/summary.json"))
t = json.load(open(f"{work}/topic/summary.json"))
mb = lambda summary: (summary.get("peak_rss_bytes") or 0) / 1e6
print(f"file:  {f['events']} events, {f['alerts']} alerts in {file_s:.2f} s: {f['events'] / file_s:,.0f} events/s, peak RSS {mb(f):.0f} MB")
print(f"topic: {t['events']} events, {t['alerts']} alerts in {topic_s:.2f} s: {t['events'] / topic_s:,.0f} events/s, peak RSS {mb(t):.0f} MB")
print(f"topic / file time: {topic_s / file_s:.2f}x")
PY
