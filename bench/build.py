"""Benchmark of the SQL builders on N days of synthetic chain facts (default 7).

Prints: the full rebuild of core.btc_primitive_block and core.btc_primitive_10m (buckets/s, tx/s), and the
latency of one new block from the commit of its batch to its 10m row (goal < 1 s).
Usage: python -m bench.build [--days 7] [--tx-per-block 2500]
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

from bench.common import bench_database, machine_line

# Synthetic raw facts in SQL: one block every 600 s from 2024-04-20 (height 840000), tx_per_block
# transactions each (coinbase first), ~75% segwit, fees from a skewed distribution.
GENERATE_BLOCKS = """
INSERT INTO raw.btc_blocks_raw (height, block_hash, previous_block_hash, block_time, median_time, tx_count, size,
                                stripped_size, weight, difficulty, chainwork, version, merkle_root, bits, nonce)
SELECT h,
       lpad(to_hex(h), 64, '0'),
       lpad(to_hex(h - 1), 64, '0'),
       timestamptz '2024-04-20 00:00:00+00' + (h - 840000) * interval '600 seconds' + interval '3600 seconds',
       timestamptz '2024-04-20 00:00:00+00' + (h - 840000) * interval '600 seconds',
       %(tx)s, %(tx)s * 560, %(tx)s * 400, %(tx)s * 2000, 86388558925171, lpad(to_hex(h), 64, '0'), 536870912,
       lpad(to_hex(h), 64, '0'), '17034219', h
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS h
"""

GENERATE_TXS = """
INSERT INTO raw.btc_tx_raw (height, event_time, tx_index, txid, size, vsize, weight, is_coinbase, is_segwit,
                            input_count, output_count, output_value_sat, fee_sat)
SELECT h,
       timestamptz '2024-04-20 00:00:00+00' + (h - 840000) * interval '600 seconds',
       i,
       md5(h::text || ':' || i::text) || md5(i::text || ':' || h::text),
       250 + (i * 37) %% 400,
       180 + (i * 37) %% 300,
       4 * (180 + (i * 37) %% 300),
       i = 0,
       i %% 4 <> 0,
       CASE WHEN i = 0 THEN 1 ELSE 1 + i %% 3 END,
       1 + i %% 3,
       CASE WHEN i = 0 THEN 312500000 + 25000 * (%(tx)s - 1) ELSE 10000000 + i * 1000 END,
       CASE WHEN i = 0 THEN NULL ELSE 25000 END
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS h, generate_series(0, %(tx)s - 1) AS i
"""


def generate(conn: psycopg.Connection, first: int, last: int, tx: int) -> None:
    params = {"first": first, "last": last, "tx": tx}
    conn.execute(GENERATE_BLOCKS, params)
    conn.execute(GENERATE_TXS, params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--tx-per-block", type=int, default=2500)
    parser.add_argument("--latency-samples", type=int, default=10)
    args = parser.parse_args()
    blocks = args.days * 144
    first, last = 840000, 840000 + blocks - 1
    print(machine_line())
    with bench_database() as url, psycopg.connect(url) as conn:
        t = time.perf_counter()
        with conn.transaction():
            generate(conn, first, last, args.tx_per_block)
            conn.execute("SELECT core.set_checkpoint('btc', 'btc_raw_block_ingestion', 'block', %s, NULL)", (last,))
        conn.execute("ANALYZE")
        conn.commit()
        print(f"generated {blocks:,} blocks x {args.tx_per_block:,} tx in {time.perf_counter() - t:.1f}s")

        txs = blocks * args.tx_per_block
        t = time.perf_counter()
        with conn.transaction():
            conn.execute("SELECT core.build_primitive_block(%s, %s)", (first, last))
        block_sec = time.perf_counter() - t
        print(
            f"btc_primitive_block full rebuild: {blocks:,} blocks in {block_sec:.2f}s "
            f"= {blocks / block_sec:,.0f} blocks/s, {txs / block_sec:,.0f} tx/s"
        )

        t = time.perf_counter()
        with conn.transaction():
            (buckets,) = conn.execute("SELECT bucket_count FROM core.build_primitive_10m()").fetchone()
        tenm_sec = time.perf_counter() - t
        print(
            f"btc_primitive_10m full rebuild: {buckets:,} buckets in {tenm_sec:.2f}s "
            f"= {buckets / tenm_sec:,.0f} buckets/s, {txs / tenm_sec:,.0f} tx/s"
        )

        latencies = []
        for n in range(args.latency_samples):
            h = last + 1 + n
            with conn.transaction():
                conn.execute("SELECT core.begin_block_batch(%s, %s)", (h, h))
                generate(conn, h, h, args.tx_per_block)
                conn.execute("SELECT core.finish_block_batch(%s, %s)", (h, h))
            committed = time.perf_counter()
            with conn.transaction():
                conn.execute("SELECT * FROM core.build_primitive_10m()")
            (height,) = conn.execute(
                "SELECT best_block_height_last FROM core.btc_primitive_10m ORDER BY bucket_start_utc DESC LIMIT 1"
            ).fetchone()
            conn.commit()
            latencies.append(time.perf_counter() - committed)
            assert height == h, (height, h)
        median_ms = statistics.median(latencies) * 1000
        print(
            f"new block ({args.tx_per_block:,} tx) commit -> its 10m row: median {median_ms:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} blocks (goal < 1000 ms)"
        )


if __name__ == "__main__":
    main()
