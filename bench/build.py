"""Benchmark of the SQL builders on N days of synthetic chain facts (default 7), against a per-bucket builder.

Prints, on the same data in the same run:
- the full rebuild of core.btc_primitive_block (with its fee facts, core.btc_block_fee_facts);
- the full rebuild of core.btc_primitive_10m by core.build_primitive_10m (set-based, from per-block facts),
  and by the per-bucket reference builder below (one query and one commit per bucket, reading the raw
  blocks and transactions as the seed's builder did), interleaved SQL / reference / SQL, and the ratio;
- whether the two agree exactly on every bucket's fee median, percentiles and min/max feerate;
- one new block at the tip, as the loader writes it: core.finish_block_batch (per-block SQL, fee facts
  included) and core.build_primitive_10m (goal: its 10m row in < 10 ms of database time): database time at
  the server, shared buffers touched and the server process's CPU time, medians over --latency-samples
  blocks, and the per-bucket reference query for the same bucket with the ratio per block.
--layout uniform: one block every 600 s (one per bucket); poisson: exponential intervals of mean 600 s
(0, 1, 2, 3... blocks per bucket, as on mainnet). Fees: feerates 1..~300 sat/vB, skewed to the low end.
Usage: python -m bench.build [--days 7] [--tx-per-block 2500] [--layout uniform|poisson]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import psycopg

from bench.common import bench_database, machine_line

# Synthetic raw facts in SQL from height 840000 (2024-04-20). Median time past of block h: the previous
# block's plus 600 s (uniform) or plus an exponential interval of mean 600 s (poisson, at least 1 s);
# header time one hour after it. tx_per_block transactions each (coinbase first), ~75% segwit.
GENERATE_BLOCKS = """
INSERT INTO raw.btc_blocks_raw (height, block_hash, previous_block_hash, block_time, median_time, tx_count, size,
                                stripped_size, weight, difficulty, chainwork, version, merkle_root, bits, nonce)
SELECT h,
       lpad(to_hex(h), 64, '0'),
       lpad(to_hex(h - 1), 64, '0'),
       m + interval '3600 seconds',
       m,
       %(tx)s, %(tx)s * 560, %(tx)s * 400, %(tx)s * 2000, 86388558925171, lpad(to_hex(h), 64, '0'), 536870912,
       lpad(to_hex(h), 64, '0'), '17034219', h
FROM (
    SELECT h,
           coalesce(
               (SELECT b.median_time FROM raw.btc_blocks_raw AS b WHERE b.height = %(first)s - 1),
               timestamptz '2024-04-20 00:00:00+00' - interval '600 seconds'
           ) + make_interval(secs => sum(CASE
               WHEN %(layout)s = 'uniform' THEN 600
               ELSE greatest(1, round(-600 * ln((abs(hashint8(h)) %% 1000000 + 1) / 1000001.0)))
           END) OVER (ORDER BY h)) AS m
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS h
) AS s
"""

# Feerate r sat/vB from a hash of (height, index): 1 + 300 u^3 (u uniform in [0, 1)), fee = r x vsize.
GENERATE_TXS = """
INSERT INTO raw.btc_tx_raw (height, tx_index, txid, size, vsize, weight, is_coinbase, is_segwit,
                            input_count, output_count, output_value_sat, fee_sat)
SELECT b.height,
       i,
       decode(md5(b.height::text || ':' || i::text) || md5(i::text || ':' || b.height::text), 'hex'),
       250 + (i * 37) %% 400,
       180 + (i * 37) %% 300,
       4 * (180 + (i * 37) %% 300) - (i %% 4),
       i = 0,
       i %% 4 <> 0,
       CASE WHEN i = 0 THEN 1 ELSE 1 + i %% 3 END,
       1 + i %% 3,
       CASE WHEN i = 0 THEN 312500000 ELSE 10000000 + i * 1000 END,
       CASE WHEN i = 0 THEN NULL ELSE
           (180 + (i * 37) %% 300)
           * (1 + floor(300 * power((abs(hashint8(b.height * 100000 + i)) %% 1000000) / 1000000.0, 3)))::bigint
       END
FROM raw.btc_blocks_raw AS b, generate_series(0, %(tx)s - 1) AS i
WHERE b.height BETWEEN %(first)s AND %(last)s
"""

# The coinbase claims the subsidy plus the block's fees.
COINBASE_PAYOUT = """
UPDATE raw.btc_tx_raw AS t
SET output_value_sat = 312500000 + f.fees
FROM (
    SELECT height, sum(fee_sat)::bigint AS fees FROM raw.btc_tx_raw
    WHERE height BETWEEN %(first)s AND %(last)s GROUP BY height
) AS f
WHERE t.height = f.height AND t.tx_index = 0
"""


def generate(conn: psycopg.Connection, first: int, last: int, tx: int, layout: str = "uniform") -> None:
    params = {"first": first, "last": last, "tx": tx, "layout": layout}
    conn.execute(GENERATE_BLOCKS, params)
    conn.execute(GENERATE_TXS, params)
    conn.execute(COINBASE_PAYOUT, params)


# The per-bucket reference builder: the seed's design, one query per bucket over the raw blocks and
# transactions of that bucket (exact medians and percentiles from the transactions, the straightforward
# way: percentile_disc and a running weight sum), one commit per bucket.
REFERENCE_TABLE = """
CREATE TABLE IF NOT EXISTS public.bench_reference_10m (
    bucket_start_utc timestamptz PRIMARY KEY,
    block_count integer NOT NULL,
    tx_count bigint NOT NULL,
    fees_sat bigint NOT NULL,
    fee_observed_tx_count bigint NOT NULL,
    supply_total_sat bigint,
    median_fee_sat numeric,
    fee_p10_sat bigint,
    fee_p25_sat bigint,
    fee_p75_sat bigint,
    fee_p90_sat bigint,
    median_feerate_sat_vb numeric,
    min_feerate_sat_vb numeric,
    max_feerate_sat_vb numeric,
    feerate_p10_sat_vb bigint,
    feerate_p25_sat_vb bigint,
    feerate_p75_sat_vb bigint,
    feerate_p90_sat_vb bigint
);
TRUNCATE public.bench_reference_10m;
"""

REFERENCE_BUCKET = """
INSERT INTO public.bench_reference_10m
WITH blocks AS (
    SELECT b.height
    FROM raw.btc_blocks_raw AS b
    WHERE b.height > 0
      AND coalesce(b.median_time, b.block_time) >= %(b)s
      AND coalesce(b.median_time, b.block_time) < %(b)s + interval '10 minutes'
),
tx AS (
    SELECT t.* FROM raw.btc_tx_raw AS t INNER JOIN blocks AS b ON t.height = b.height
),
obs AS (
    SELECT
        t.fee_sat,
        coalesce(t.vsize, ceil(coalesce(t.weight, 4 * t.size) / 4.0))::bigint AS vsize_vb,
        round(t.fee_sat::numeric / nullif(coalesce(t.vsize, ceil(coalesce(t.weight, 4 * t.size) / 4.0)), 0), 8)
            AS feerate,
        (t.fee_sat * 4) / coalesce(t.weight, 4 * t.size) AS core_rate,
        coalesce(t.weight, 4 * t.size) AS weight_wu
    FROM tx AS t
    WHERE NOT t.is_coinbase AND t.fee_sat IS NOT NULL
),
weighted AS (
    SELECT o.core_rate, sum(o.weight_wu) OVER (ORDER BY o.core_rate)::float8 AS cum,
           sum(o.weight_wu) OVER ()::float8 AS total
    FROM obs AS o
),
fee_stats AS (
    SELECT
        count(*) AS n,
        round((percentile_disc(0.5) WITHIN GROUP (ORDER BY o.fee_sat)
               + percentile_disc(0.5) WITHIN GROUP (ORDER BY o.fee_sat DESC))::numeric / 2, 8) AS median_fee,
        percentile_disc(ARRAY[0.1, 0.25, 0.75, 0.9]) WITHIN GROUP (ORDER BY o.fee_sat) AS fee_pct,
        round((percentile_disc(0.5) WITHIN GROUP (ORDER BY o.feerate)
               + percentile_disc(0.5) WITHIN GROUP (ORDER BY o.feerate DESC)) / 2, 8) AS median_feerate,
        min(o.feerate) AS min_feerate,
        max(o.feerate) AS max_feerate
    FROM obs AS o
),
core_pct AS (
    SELECT
        min(w.core_rate) FILTER (WHERE w.cum >= w.total / 10) AS p10,
        min(w.core_rate) FILTER (WHERE w.cum >= w.total / 4) AS p25,
        min(w.core_rate) FILTER (WHERE w.cum >= w.total * 3 / 4) AS p75,
        min(w.core_rate) FILTER (WHERE w.cum >= w.total * 9 / 10) AS p90
    FROM weighted AS w
)
SELECT
    %(b)s,
    (SELECT count(*) FROM blocks),
    (SELECT count(*) FROM tx),
    coalesce((SELECT sum(t.fee_sat) FROM tx AS t), 0),
    f.n,
    (SELECT pb.cumulative_supply_sat FROM core.btc_primitive_block AS pb
     WHERE pb.bucket_start_utc <= %(b)s ORDER BY pb.height DESC LIMIT 1),
    f.median_fee, f.fee_pct[1], f.fee_pct[2], f.fee_pct[3], f.fee_pct[4],
    f.median_feerate, f.min_feerate, f.max_feerate,
    c.p10, c.p25, c.p75, c.p90
FROM fee_stats AS f, core_pct AS c
"""

COMPARED = (
    "median_fee_sat, fee_p10_sat, fee_p25_sat, fee_p75_sat, fee_p90_sat, median_feerate_sat_vb, "
    "min_feerate_sat_vb, max_feerate_sat_vb, feerate_p10_sat_vb, feerate_p25_sat_vb, feerate_p75_sat_vb, "
    "feerate_p90_sat_vb, block_count, tx_count, fee_observed_tx_count, supply_total_sat"
)
SQL_COLUMNS = (
    "median_fee_sat_10m, fee_p10_sat_10m, fee_p25_sat_10m, fee_p75_sat_10m, fee_p90_sat_10m, "
    "median_feerate_sat_vb_10m, min_feerate_sat_vb_10m, max_feerate_sat_vb_10m, feerate_p10_sat_vb_10m, "
    "feerate_p25_sat_vb_10m, feerate_p75_sat_vb_10m, feerate_p90_sat_vb_10m, block_count, tx_count_10m, "
    "fee_observed_tx_count_10m, supply_total_sat"
)


def reset_backbone(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("TRUNCATE core.btc_primitive_10m")
        conn.execute(
            "DELETE FROM core.sync_checkpoints WHERE component = 'btc_primitive_10m_builder' AND \"interval\" = '10m'"
        )


def sql_full_rebuild(conn: psycopg.Connection) -> tuple[int, float]:
    reset_backbone(conn)
    t = time.perf_counter()
    with conn.transaction():
        (buckets,) = conn.execute("SELECT bucket_count FROM core.build_primitive_10m()").fetchone()
    return buckets, time.perf_counter() - t


def reference_full_rebuild(conn: psycopg.Connection) -> tuple[int, float]:
    with conn.transaction():
        conn.execute(REFERENCE_TABLE)
        first, last = conn.execute(
            "SELECT min(bucket_start_utc), max(bucket_start_utc) FROM core.btc_primitive_block WHERE height > 0"
        ).fetchone()
    buckets = [
        r[0]
        for r in conn.execute(
            "SELECT generate_series(%s::timestamptz, %s::timestamptz, interval '10 minutes')", (first, last)
        ).fetchall()
    ]
    conn.commit()
    t = time.perf_counter()
    for b in buckets:
        with conn.transaction():
            conn.execute(REFERENCE_BUCKET, {"b": b})
    return len(buckets), time.perf_counter() - t


def compare(conn: psycopg.Connection) -> tuple[int, int]:
    """(buckets compared, buckets that differ) between the reference builder and btc_primitive_10m."""
    (compared, differ) = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE (r.{COMPARED.replace(', ', ', r.')}) IS DISTINCT FROM"
        f" (p.{SQL_COLUMNS.replace(', ', ', p.')}))"
        " FROM public.bench_reference_10m AS r"
        " INNER JOIN core.btc_primitive_10m AS p ON r.bucket_start_utc = p.bucket_start_utc"
    ).fetchone()
    conn.commit()
    return compared, differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--tx-per-block", type=int, default=2500)
    parser.add_argument("--layout", choices=("uniform", "poisson"), default="uniform")
    parser.add_argument("--latency-samples", type=int, default=40)
    args = parser.parse_args()
    blocks = args.days * 144
    first, last = 840000, 840000 + blocks - 1
    print(machine_line())
    with bench_database() as url, psycopg.connect(url) as conn:
        t = time.perf_counter()
        with conn.transaction():
            generate(conn, first, last, args.tx_per_block, args.layout)
            conn.execute("SELECT core.set_checkpoint('btc', 'btc_raw_block_ingestion', 'block', %s, NULL)", (last,))
        conn.execute("ANALYZE")
        conn.commit()
        print(
            f"generated {blocks:,} blocks x {args.tx_per_block:,} tx ({args.layout}) in {time.perf_counter() - t:.1f}s"
        )

        txs = blocks * args.tx_per_block
        t = time.perf_counter()
        with conn.transaction():
            conn.execute("SELECT core.build_primitive_block(%s, %s)", (first, last))
        block_sec = time.perf_counter() - t
        print(
            f"btc_primitive_block + btc_block_fee_facts full rebuild: {blocks:,} blocks in {block_sec:.2f}s "
            f"= {blocks / block_sec:,.0f} blocks/s, {txs / block_sec:,.0f} tx/s"
        )
        conn.execute("ANALYZE")
        conn.commit()
        (multi,) = conn.execute(
            "SELECT count(*) FROM (SELECT bucket_start_utc FROM core.btc_primitive_block"
            " GROUP BY 1 HAVING count(*) > 1) AS m"
        ).fetchone()
        conn.commit()

        buckets, sql_a = sql_full_rebuild(conn)
        _, ref_sec = reference_full_rebuild(conn)
        _, sql_b = sql_full_rebuild(conn)
        sql_sec = min(sql_a, sql_b)
        print(
            f"btc_primitive_10m full rebuild, SQL builder: {buckets:,} buckets ({multi:,} with 2+ blocks) in"
            f" {sql_a * 1000:.0f} / {sql_b * 1000:.0f} ms (before / after the reference) ="
            f" {buckets / sql_sec:,.0f} buckets/s, {txs / sql_sec:,.0f} tx/s"
        )
        print(
            f"per-bucket reference builder: {buckets:,} buckets in {ref_sec:.2f}s = {buckets / ref_sec:,.0f} buckets/s"
        )
        print(f"ratio reference / SQL (faster SQL run): {ref_sec / sql_sec:.0f}x (goal >= 100x)")
        compared, differ = compare(conn)
        print(
            f"fee medians, percentiles, min/max feerate, counts, supply: {compared - differ:,} of {compared:,}"
            " buckets equal"
        )

        one_block(conn, last, args)


def statement_cost(conn: psycopg.Connection, sql: str, params: dict | tuple | None = None) -> tuple[float, int, float]:
    """Run one statement under EXPLAIN (ANALYZE, BUFFERS): (database time in ms, planning + execution;
    shared buffers hit + read, nested statements included; CPU ms of the server process, from
    /proc/<pid>/schedstat, which excludes time spent waiting for a core; NaN when the server is not local)."""
    pid = conn.info.backend_pid
    before = backend_cpu_ns(pid)
    ((plan,),) = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params).fetchall()
    after = backend_cpu_ns(pid)
    top = plan[0]["Plan"]
    return (
        plan[0].get("Planning Time", 0.0) + plan[0]["Execution Time"],
        top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0),
        (after - before) / 1e6 if before is not None and after is not None else float("nan"),
    )


def backend_cpu_ns(pid: int) -> int | None:
    """CPU ns the server process ran; None unless that pid here is a PostgreSQL process (a remote server)."""
    try:
        if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"postgres"):
            return None
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def one_block(conn: psycopg.Connection, last: int, args: argparse.Namespace) -> None:
    """New blocks at the tip, one at a time, as the loader writes them (app/btc/writer.py: begin, rows, finish
    in one transaction; then app/btc/chain_sync.build_timeline: core.build_primitive_10m(NULL, 4320) until it
    returns nothing). Per block: the statements' database time, buffers and server CPU, and the per-bucket
    reference query for the block's bucket (same data, same moment: the ratio cancels the machine's load)."""
    samples: dict[str, list[float]] = {}
    blocks_in_bucket = []
    with conn.transaction():
        conn.execute(REFERENCE_TABLE)  # empty: the comparison below covers the new blocks' buckets
    for n in range(args.latency_samples):
        h = last + 1 + n
        with conn.transaction():
            conn.execute("SELECT core.begin_block_batch(%s, %s)", (h, h))
            generate(conn, h, h, args.tx_per_block, args.layout)
            cost = statement_cost(conn, "SELECT core.finish_block_batch(%s, %s)", (h, h))
        for name, value in zip(("finish_ms", "finish_buffers", "finish_cpu"), cost, strict=True):
            samples.setdefault(name, []).append(value)
        with conn.transaction():
            cost = statement_cost(conn, "SELECT * FROM core.build_primitive_10m(NULL, 4320)")
        with conn.transaction():
            idle = statement_cost(conn, "SELECT * FROM core.build_primitive_10m(NULL, 4320)")  # nothing left
        for name, value in zip(("build_ms", "build_buffers", "build_cpu"), cost, strict=True):
            samples.setdefault(name, []).append(value)
        samples.setdefault("idle_ms", []).append(idle[0])
        height, bucket, count = conn.execute(
            "SELECT best_block_height_last, bucket_start_utc, block_count FROM core.btc_primitive_10m"
            " ORDER BY bucket_start_utc DESC LIMIT 1"
        ).fetchone()
        conn.commit()
        assert height == h, (height, h)
        blocks_in_bucket.append(count)
        with conn.transaction():
            conn.execute("DELETE FROM public.bench_reference_10m WHERE bucket_start_utc = %s", (bucket,))
            reference = statement_cost(conn, REFERENCE_BUCKET.replace("%(b)s", "%(b)s::timestamptz"), {"b": bucket})
        for name, value in zip(("ref_ms", "ref_buffers", "ref_cpu"), reference, strict=True):
            samples.setdefault(name, []).append(value)
    compared, differ = compare(conn)

    def med(name: str, rows: list[int] | None = None) -> float:
        values = samples[name] if rows is None else [samples[name][i] for i in rows]
        return statistics.median(values)

    print(
        f"new block ({args.tx_per_block:,} tx), {len(blocks_in_bucket)} blocks one at a time (database time at the"
        " server; buffers = shared hit + read; CPU = the server process's, without waiting for a core):"
    )
    print(
        f"  core.finish_block_batch: median {med('finish_ms'):.1f} ms (max {max(samples['finish_ms']):.1f}),"
        f" {med('finish_buffers'):.0f} buffers, CPU {med('finish_cpu'):.1f} ms"
    )
    print(
        f"  core.build_primitive_10m -> its 10m row: median {med('build_ms'):.1f} ms"
        f" (max {max(samples['build_ms']):.1f}), {med('build_buffers'):.0f} buffers, CPU {med('build_cpu'):.2f} ms"
        f" (goal < 10 ms); the call after it (nothing to build): median {med('idle_ms'):.2f} ms"
    )
    for k in sorted(set(blocks_in_bucket)):
        rows = [i for i, c in enumerate(blocks_in_bucket) if c == k]
        print(
            f"    bucket with {k} block(s), {len(rows)} builds: median {med('build_ms', rows):.1f} ms,"
            f" {med('build_buffers', rows):.0f} buffers, CPU {med('build_cpu', rows):.2f} ms"
        )
    ratios = [r / b for r, b in zip(samples["ref_ms"], samples["build_ms"], strict=True)]
    print(
        f"  per-bucket reference query for the same bucket: median {med('ref_ms'):.1f} ms,"
        f" {med('ref_buffers'):.0f} buffers, CPU {med('ref_cpu'):.2f} ms; ratio reference / build per block:"
        f" median {statistics.median(ratios):.1f}x; the bucket's row equal to the reference in {compared - differ:,}"
        f" of {compared:,}"
    )


if __name__ == "__main__":
    main()
