#!/usr/bin/env bash
# End-to-end throughput and peak memory of `surveil run`, with a baseline measured in the
# same run so that the figures survive a noisy, shared machine.
#
#   benches/e2e.sh [EVENTS]        # default 10,000,000 generated events
#
# For each input it reports the median wall time of REPEAT runs, events/s, peak RSS (from
# summary.json), and two ratios measured in the same run:
#   vs_ingest: full job / the same job with every detector disabled (read, parse, validate,
#              enrich, route, order in event time): what the detectors cost;
#   vs_wc:     full job / `wc -l` over the same file (single-threaded line counting: the
#              floor of touching every byte once).
set -euo pipefail
command -v bc >/dev/null || { echo "benches/e2e.sh needs bc (apt-get install bc)" >&2; exit 1; }
cd "$(dirname "$0")/.."
EVENTS="${1:-10000000}"
REPEAT="${REPEAT:-3}"
DATA="${SURVEIL_DATA:-../shared/datasets}"
WORK="${BENCH_DIR:-target/bench}"
mkdir -p "$WORK"

cargo build --release --quiet
BIN=target/release/surveil

DAY="$WORK/day-$EVENTS"
if [ ! -f "$DAY/events.csv" ]; then
    "$BIN" generate --events "$EVENTS" --out "$DAY"
fi

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

now() { date +%s.%N; }

baseline() { # lines/s of wc -l
    local file=$1 times=()
    for _ in $(seq "$REPEAT"); do
        local t0; t0=$(now); wc -l "$file" >/dev/null; local t1; t1=$(now)
        times+=("$(echo "$t1 - $t0" | bc -l)")
    done
    printf '%s\n' "${times[@]}" | median
}

run() { # prints: median seconds, events, peak rss MiB
    local workers=$1 config=$2 file=$3 times=() summary
    for i in $(seq "$REPEAT"); do
        local args=(run -q --workers "$workers" --out "$WORK/out")
        [ -n "$config" ] && args+=(--config "$config")
        "$BIN" "${args[@]}" "$file"
        times+=("$(python3 -c "import json;print(json.load(open('$WORK/out/summary.json'))['elapsed_seconds'])")")
    done
    summary="$WORK/out/summary.json"
    echo "$(printf '%s\n' "${times[@]}" | median) $(python3 -c "import json;s=json.load(open('$summary'));print(s['events'], s['peak_rss_bytes']//1048576)")"
}

INGEST_ONLY="$WORK/ingest-only.toml"
: > "$INGEST_ONLY"
for rule in order_limits price_collar order_to_trade self_trade spoofing layering anomaly insider_like \
    linked_wash quote_stuffing marking_close momentum_ignition cross_trades self_trade_pattern front_running \
    collusion_rings; do
    printf '[rules.%s]\nenabled = false\n' "$rule" >> "$INGEST_ONLY"
done

printf '%-26s %7s %10s %9s %9s %9s %10s %10s %8s\n' input workers events seconds events/s peak_MiB ingest_ev/s vs_ingest vs_wc
report() {
    local name=$1 file=$2 config=$3
    local base; base=$(baseline "$file")
    local lines; lines=$(wc -l < "$file")
    local base_rate; base_rate=$(echo "$lines / $base" | bc -l)
    local ingest_config="$INGEST_ONLY"
    if [ -n "$config" ]; then
        ingest_config="$(dirname "$config")/ingest-only.toml"
        cat "$config" "$INGEST_ONLY" > "$ingest_config"
    fi
    for w in 1 2; do
        read -r secs events rss < <(run "$w" "$config" "$file")
        read -r isecs _ _ < <(run "$w" "$ingest_config" "$file")
        local rate; rate=$(echo "$events / $secs" | bc -l)
        local irate; irate=$(echo "$events / $isecs" | bc -l)
        printf '%-26s %7s %10s %9.3f %8.2fM %9s %9.2fM %9.2fx %7.3fx\n' "$name" "$w" "$events" "$secs" \
            "$(echo "$rate / 1000000" | bc -l)" "$rss" "$(echo "$irate / 1000000" | bc -l)" \
            "$(echo "$rate / $irate" | bc -l)" "$(echo "$rate / $base_rate" | bc -l)"
    done
}

report "generated day ($EVENTS)" "$DAY/events.csv" "$DAY/surveil.toml"
report "LOBSTER AAPL hour" "$DATA/lobster/aapl_2012-06-21/AAPL_2012-06-21_34200000_37800000_message_50.csv" ""
