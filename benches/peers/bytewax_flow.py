"""The comparison job in Bytewax: a module-level `flow`, configured by environment variables.

    PEERS_INPUT=trades.csv PEERS_OUT=dir PEERS_JOB=windows|self_trades PEERS_THRESHOLD=50000 \
        python -m bytewax.run bytewax_flow:flow             # one worker
        python -m bytewax.testing bytewax_flow:flow -p 2    # two processes

Rows are parsed with str.split (faster than CSVSource's dicts). FileSink takes (key, line) pairs
and writes from one worker. Windows: 1 s tumbling, aligned to
the epoch, keyed by account, event-time clock waiting 5 s for disorder.
"""

import os
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.connectors.files import FileSink, FileSource
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window

SECOND = 1_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

INPUT = os.environ.get("PEERS_INPUT", "trades.csv")
OUT = os.environ.get("PEERS_OUT", "out-bytewax")
JOB = os.environ.get("PEERS_JOB", "windows")
THRESHOLD = int(os.environ.get("PEERS_THRESHOLD", "50000"))
os.makedirs(OUT, exist_ok=True)


def parse(line):
    if line.startswith("time_ns"):
        return None
    time_ns, account, counterparty, instrument, _side, qty, price = line.split(",")
    return (int(time_ns), account, counterparty, instrument, int(qty), float(price))


def event_time(trade):
    return EPOCH + timedelta(microseconds=trade[0] // 1000)


def build(acc, trade):
    acc[0] += 1
    acc[1] += trade[4]
    acc[2] += trade[5] * trade[4]
    return acc


def merge(a, b):
    return [a[0] + b[0], a[1] + b[1], a[2] + b[2]]


flow = Dataflow("peers")
trades = op.filter_map("parse", op.input("in", flow, FileSource(INPUT)), parse)
if JOB == "self_trades":
    self_trades = op.filter("self", trades, lambda t: t[1] == t[2])
    lines = op.map("fmt", self_trades, lambda t: ("", f"{t[0]},{t[1]},{t[3]},{t[4]},{t[5]}"))
    op.output("out", lines, FileSink(os.path.join(OUT, "self_trades.csv")))
else:
    keyed = op.key_on("key", trades, lambda t: t[1])
    clock = EventClock(event_time, wait_for_system_duration=timedelta(seconds=5))
    windower = TumblingWindower(length=timedelta(seconds=1), align_to=EPOCH)
    windows = fold_window("fold", keyed, clock, windower, lambda: [0, 0, 0.0], build, merge)

    def row(key_window):
        account, (window_id, (count, qty, notional)) = key_window
        return (account, window_id * SECOND, count, qty, notional / qty)

    rows = op.map("row", windows.down, row)
    op.output("windows", op.map("fmt", rows, lambda r: ("", ",".join(map(str, r)))),
              FileSink(os.path.join(OUT, "windows.csv")))
    alerts = op.filter("alert", rows, lambda r: r[3] > THRESHOLD)
    op.output("alerts", op.map("fmt_alert", alerts, lambda r: ("", f"{r[0]},{r[1]},{r[3]}")),
              FileSink(os.path.join(OUT, "alerts.csv")))
