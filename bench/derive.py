"""Benchmark of what comes after the backbone: rollups and metrics over N days (default 365) of synthetic
blocks (one per 10 minutes) and one venue's prices.

Prints the time of the 1h/24h rollup refresh (core.refresh_rollup, from nothing) and of every registered
metric at 10m, 1h and 24h (core.run_metric in 30-day chunks, as the lane runs them), with rows/s, and the
time of one incremental step after a new block (what the lanes do in steady state).
Usage: python -m bench.derive [--days 365] [--tx-per-block 50]
"""

from __future__ import annotations

import argparse
import time

import psycopg

from app.metrics import run_metrics
from app.rollups import refresh_rollups
from bench.build import generate
from bench.common import bench_database, machine_line

VENUE_ROWS = """
INSERT INTO core.bitstamp_price_10m (bucket_start_utc, symbol, open_price_usd, high_price_usd, low_price_usd,
                                     close_price_usd, volume_btc, source_updated_at, quality_status, data_source_mode)
SELECT b, 'btcusd', p, p + 20, p - 20, p + 5, 3, b + interval '11 minutes', 'complete', 'bench'
FROM (
    SELECT
        bucket_start_utc AS b,
        round((60000 + 5000 * sin(extract(epoch FROM bucket_start_utc) / 864000))::numeric, 2) AS p
    FROM core.btc_primitive_10m
) AS s
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--tx-per-block", type=int, default=50)
    args = parser.parse_args()
    blocks = args.days * 144
    first, last = 840000, 840000 + blocks - 1
    print(machine_line())
    with bench_database() as url:
        with psycopg.connect(url) as conn:
            t = time.perf_counter()
            with conn.transaction():
                generate(conn, first, last, args.tx_per_block)
                conn.execute("SELECT core.set_checkpoint('btc', 'btc_raw_block_ingestion', 'block', %s, NULL)", (last,))
                conn.execute("SELECT core.build_primitive_block(%s, %s)", (first, last))
            with conn.transaction():
                conn.execute("SELECT * FROM core.build_primitive_10m()")
                conn.execute(VENUE_ROWS)
                conn.execute("SELECT * FROM core.compose_btc_price_10m()")
            conn.execute("ANALYZE")
            conn.commit()
            (buckets,) = conn.execute("SELECT count(*) FROM core.btc_primitive_10m").fetchone()
            conn.commit()
            print(f"set-up: {blocks:,} blocks x {args.tx_per_block} tx, {buckets:,} 10m buckets with a price"
                  f" in {time.perf_counter() - t:.1f}s")  # fmt: skip

        with psycopg.connect(url, autocommit=True) as auto:
            t = time.perf_counter()
            refresh_rollups(auto)
            sec = time.perf_counter() - t
            (hours, days) = auto.execute(
                "SELECT (SELECT count(*) FROM core.btc_primitive_1h), (SELECT count(*) FROM core.btc_primitive_24h)"
            ).fetchone()
        print(f"rollups from nothing (primitive + price, 1h and 24h): {buckets:,} 10m rows -> {hours:,} hours,"
              f" {days:,} days in {sec:.2f}s = {buckets / sec:,.0f} 10m rows/s")  # fmt: skip

        with psycopg.connect(url) as conn:
            for interval in ("10m", "1h", "24h"):
                t = time.perf_counter()
                steps = run_metrics(conn, interval=interval)
                sec = time.perf_counter() - t
                rows = sum(s.row_count for s in steps)
                assert all(s.status == "ok" for s in steps), [(s.metric_name, s.status, s.message) for s in steps]
                print(
                    f"metrics {interval}: {len(steps)} metrics, {rows:,} rows in {sec:.2f}s = {rows / sec:,.0f} rows/s"
                )

            # Steady state: one new block, then every stage once.
            h = last + 1
            t = time.perf_counter()
            with conn.transaction():
                conn.execute("SELECT core.begin_block_batch(%s, %s)", (h, h))
                generate(conn, h, h, args.tx_per_block)
                conn.execute("SELECT core.finish_block_batch(%s, %s)", (h, h))
            with conn.transaction():
                conn.execute("SELECT * FROM core.build_primitive_10m()")
                conn.execute("SELECT * FROM core.compose_btc_price_10m()")
            with psycopg.connect(url, autocommit=True) as auto:
                refresh_rollups(auto)
            run_metrics(conn)
            step_ms = (time.perf_counter() - t) * 1000
            print(f"one new block -> backbone, price, rollups and all 15 metrics: {step_ms:.0f} ms")


if __name__ == "__main__":
    main()
