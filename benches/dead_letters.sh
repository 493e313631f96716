#!/usr/bin/env bash
# Cost of the dead-letter path against the good path, per record, in instructions counted by
# callgrind (repeatable on a shared machine, unlike wall time). Three files with the same
# 200,000 good orders: alone plus 100,000 more good orders (the baseline), plus 100,000 lines with
# a negative quantity (rejected by the parser), or plus 100,000 cancels of orders never seen
# (accepted, then rejected against the order book: `unknown_order`).
#
#   benches/dead_letters.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
WORK="${BENCH_DIR:-target/bench}/dead_letters"
mkdir -p "$WORK"
cargo build --release --quiet
BIN=target/release/surveil
python3 - "$WORK" <<'PY'
import sys
work = sys.argv[1]
header = "event_time,seq,kind,venue,instrument,order_id,account,trader,desk,owner,side,price,quantity,aggressor,hidden,buyer,seller,buyer_owner,seller_owner,buy_order,sell_order,bid_price,bid_quantity,ask_price,ask_quantity,status\n"
def write(name, extra):
    with open(f"{work}/{name}.csv", "w") as out:
        out.write(header)
        t = 1709303400000000000
        for i in range(200000):
            t += 1000
            out.write(f"{t},,new,XSVL,I{i % 37},O{i},ACC{i % 101},,,,buy,10.5,5,,,,,,,,,,,,,\n")
            if i % 2 == 0:
                if extra == "good":
                    out.write(f"{t},,new,XSVL,I{i % 37},P{i},ACC{i % 101},,,,buy,10.5,5,,,,,,,,,,,,,\n")
                elif extra == "bad_quantity":
                    out.write(f"{t},,new,XSVL,I{i % 37},Q{i},ACC{i % 101},,,,buy,10.5,-5,,,,,,,,,,,,,\n")
                else:
                    out.write(f"{t},,cancel,XSVL,I{i % 37},X{i},ACC{i % 101},,,,,,,,,,,,,,,,,,,\n")
for extra in ["good", "bad_quantity", "unknown_order"]:
    write(extra, extra)
PY
count() {
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$BIN" run -q --out "$WORK/out" "$1" 2>&1 \
        | awk '/Collected/{print $4}'
}
good=$(count "$WORK/good.csv")
printf '| 100,000 extra lines | instructions | per extra line | vs a good line |\n|---|---|---|---|\n'
for extra in good bad_quantity unknown_order; do
    n=$(count "$WORK/$extra.csv")
    python3 -c "
good, n = $good, $n
per_good = good / 300000
extra = (n - good * 200000 / 300000) / 100000
print(f'| $extra | {n:,} | {extra:,.0f} | {extra / per_good:.2f}x |')"
done
