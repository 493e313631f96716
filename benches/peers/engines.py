"""The comparison job in each peer engine, one engine per invocation.

    python engines.py ENGINE JOB INPUT OUT_DIR [--threshold N] [--parallelism P]

ENGINE: polars, polars-dynamic, duckdb, flink. (Bytewax lives in bytewax_flow.py, run through
`python -m bytewax.run` / `python -m bytewax.testing`.) JOB: windows or self_trades.

Each writes CSV files into OUT_DIR with the same columns as surveil's part files:
  windows:     windows*.csv      account,window_start_ns,count,sum_qty,vwap
               alerts*.csv       account,window_start_ns,sum_qty
  self_trades: self_trades*.csv  time_ns,account,instrument,qty,price
and prints one JSON line: {"engine", "job", "startup_seconds", "job_seconds"}.
"""

import argparse
import json
import os
import sys
import time

SECOND = 1_000_000_000
COLUMNS = ["time_ns", "account", "counterparty", "instrument", "side", "qty", "price"]


def polars_job(job, path, out, threshold, dynamic):
    import polars as pl

    schema = {
        "time_ns": pl.Int64, "account": pl.Utf8, "counterparty": pl.Utf8, "instrument": pl.Utf8,
        "side": pl.Utf8, "qty": pl.Int64, "price": pl.Float64,
    }
    started = time.perf_counter()
    df = pl.read_csv(path, schema=schema)
    if job == "self_trades":
        df.filter(pl.col("account") == pl.col("counterparty")).select(
            "time_ns", "account", "instrument", "qty", "price"
        ).write_csv(os.path.join(out, "self_trades.csv"))
        return started
    if dynamic:
        # Event-time windows the Polars way: group_by_dynamic over a sorted datetime column.
        windows = (
            df.with_columns(pl.from_epoch(pl.col("time_ns"), time_unit="ns").alias("ts"))
            .sort("ts")
            .group_by_dynamic("ts", every="1s", group_by="account")
            .agg(
                count=pl.len(),
                sum_qty=pl.col("qty").sum(),
                notional=(pl.col("price") * pl.col("qty")).sum(),
            )
            .with_columns(window_start_ns=pl.col("ts").dt.epoch("ns"))
        )
    else:
        windows = (
            df.with_columns(window_start_ns=pl.col("time_ns") // SECOND * SECOND)
            .group_by("account", "window_start_ns")
            .agg(
                count=pl.len(),
                sum_qty=pl.col("qty").sum(),
                notional=(pl.col("price") * pl.col("qty")).sum(),
            )
        )
    windows = windows.with_columns(vwap=pl.col("notional") / pl.col("sum_qty")).select(
        "account", "window_start_ns", "count", "sum_qty", "vwap"
    )
    windows.write_csv(os.path.join(out, "windows.csv"))
    windows.filter(pl.col("sum_qty") > threshold).select("account", "window_start_ns", "sum_qty").write_csv(
        os.path.join(out, "alerts.csv")
    )
    return started


def duckdb_job(job, path, out, threshold, threads):
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    source = (
        f"read_csv('{path}', header = true, columns = {{'time_ns': 'BIGINT', 'account': 'VARCHAR', "
        "'counterparty': 'VARCHAR', 'instrument': 'VARCHAR', 'side': 'VARCHAR', 'qty': 'BIGINT', "
        "'price': 'DOUBLE'})"
    )
    if job == "self_trades":
        con.execute(
            f"COPY (SELECT time_ns, account, instrument, qty, price FROM {source} WHERE account = counterparty) "
            f"TO '{os.path.join(out, 'self_trades.csv')}' (HEADER)"
        )
        return started
    con.execute(
        "CREATE TEMP TABLE windows AS SELECT account, time_ns // 1000000000 * 1000000000 AS window_start_ns, "
        "count(*) AS count, sum(qty) AS sum_qty, sum(price * qty) / sum(qty) AS vwap "
        f"FROM {source} GROUP BY ALL"
    )
    con.execute(f"COPY windows TO '{os.path.join(out, 'windows.csv')}' (HEADER)")
    con.execute(
        f"COPY (SELECT account, window_start_ns, sum_qty FROM windows WHERE sum_qty > {int(threshold)}) "
        f"TO '{os.path.join(out, 'alerts.csv')}' (HEADER)"
    )
    return started


def flink_job(job, path, out, threshold, parallelism):
    """PyFlink Table API, streaming mode, local mini-cluster, event-time watermark of 5 s."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    config.set("parallelism.default", str(parallelism))
    config.set("table.local-time-zone", "UTC")
    config.set("pipeline.name", f"surveil-peers-{job}")
    started = time.perf_counter()
    # The header row fails to parse: its fields become NULL, its time 0, and it is filtered out.
    env.execute_sql(
        f"""CREATE TABLE trades (
            time_ns BIGINT, account STRING, counterparty STRING, instrument STRING, side STRING,
            qty BIGINT, price DOUBLE,
            ts AS TO_TIMESTAMP_LTZ(COALESCE(CAST(time_ns / 1000000 AS BIGINT), 0), 3),
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
        ) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'csv',
                'csv.ignore-parse-errors' = 'true')"""
    )

    def sink(name, columns):
        env.execute_sql(
            f"""CREATE TABLE {name} ({columns}) WITH ('connector' = 'filesystem',
                'path' = '{os.path.join(out, name)}', 'format' = 'csv')"""
        )

    statements = env.create_statement_set()
    if job == "self_trades":
        sink("self_trades", "time_ns BIGINT, account STRING, instrument STRING, qty BIGINT, price DOUBLE")
        statements.add_insert_sql(
            "INSERT INTO self_trades SELECT time_ns, account, instrument, qty, price FROM trades "
            "WHERE time_ns IS NOT NULL AND account = counterparty"
        )
    else:
        sink("windows", "account STRING, window_start_ns BIGINT, `count` BIGINT, sum_qty BIGINT, vwap DOUBLE")
        sink("alerts", "account STRING, window_start_ns BIGINT, sum_qty BIGINT")
        env.execute_sql(
            """CREATE TEMPORARY VIEW account_windows AS
               SELECT account,
                      CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', window_start) AS BIGINT)
                          * 1000000000 AS window_start_ns,
                      COUNT(*) AS `count`, SUM(qty) AS sum_qty, SUM(price * qty) / SUM(qty) AS vwap
               FROM TABLE(TUMBLE(TABLE trades, DESCRIPTOR(ts), INTERVAL '1' SECOND))
               WHERE time_ns IS NOT NULL
               GROUP BY account, window_start, window_end"""
        )
        statements.add_insert_sql("INSERT INTO windows SELECT * FROM account_windows")
        statements.add_insert_sql(
            f"INSERT INTO alerts SELECT account, window_start_ns, sum_qty FROM account_windows "
            f"WHERE sum_qty > {int(threshold)}"
        )
    statements.execute().wait()
    return started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=["polars", "polars-dynamic", "duckdb", "flink"])
    parser.add_argument("job", choices=["windows", "self_trades"])
    parser.add_argument("input")
    parser.add_argument("out")
    parser.add_argument("--threshold", type=int, default=50_000)
    parser.add_argument("--parallelism", type=int, default=0, help="Flink parallelism / DuckDB threads")
    args = parser.parse_args()
    process_start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.abspath(args.input)
    out = os.path.abspath(args.out)
    if args.engine == "polars":
        started = polars_job(args.job, path, out, args.threshold, dynamic=False)
    elif args.engine == "polars-dynamic":
        started = polars_job(args.job, path, out, args.threshold, dynamic=True)
    elif args.engine == "duckdb":
        started = duckdb_job(args.job, path, out, args.threshold, args.parallelism)
    else:
        started = flink_job(args.job, path, out, args.threshold, max(1, args.parallelism))
    ended = time.perf_counter()
    print(json.dumps({
        "engine": args.engine, "job": args.job,
        "startup_seconds": started - process_start, "job_seconds": ended - started,
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
