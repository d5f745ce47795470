"""Cost of the coin-age metrics: their rebuild time and the storage per transaction they add.

sim-node serves a synthetic chain from genesis (`--days` x 144 blocks of about `--tx-per-block` transactions
whose inputs spend earlier outputs of the chain), ingested by the loader at getblock verbosity 3 (prevouts)
into a throwaway PostgreSQL cluster (or MQNODE_BENCH_DATABASE_URL), with one venue's synthetic prices
composed into the canonical price and the rollups refreshed. Then:
- every registered metric once (what a new node's metrics lane does), then each coin-age metric rebuilt
  from nothing per interval (its table emptied and its checkpoint removed; app.metrics.run_metrics as the
  lane runs it): seconds, rows, rows/s;
- disk bytes per transaction of what the coin-age metrics add: raw.btc_tx_raw's three utxo_output_* columns
  (the sum of their pg_column_size), core.btc_block_utxo_facts and core.btc_block_spent_by_day (table +
  indexes + TOAST), the backbone's three UTXO columns, and the coin-age metric tables; the transient
  raw.btc_prevout_stage is empty between batches (checked).
Usage: python -m bench.coin_age [--days 3] [--tx-per-block 300]

With --split-days N: only the daily split of the age-band and holder metrics (the UTXO set at the end of each
day by creation day), before and after revision 0014, on the same facts in the same database: N days of
--split-blocks-per-day blocks, each spending outputs of --split-spend-days earlier creation days (ages skewed
young, as on mainnet), written straight into core.btc_primitive_block / btc_block_utxo_facts /
btc_block_spent_by_day (no node: the split reads only these). Before = the function of 085 up to revision
0013 (BEFORE_SPLIT below: every day re-reads every earlier creation and spend); after =
core.build_btc_utxo_age_days (each day from the day before's snapshot) and its reader. Prints, for prefixes
of the days, both times, their ratio and the rows each visits; one new day (the lane's steady state) with and
without a stored snapshot before it; and checks that both give identical rows.
Usage: python -m bench.coin_age --split-days 400 [--split-blocks-per-day 24] [--split-spend-days 20]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import psycopg

from app.btc.backfill import backfill
from app.btc.chain_sync import IngestOptions
from app.metrics import run_metrics
from app.rollups import refresh_rollups
from bench.common import bench_database, machine_line
from bench.derive import VENUE_ROWS
from tests.simnode_proc import SimNodeProcess

FACT_TABLES = ("core.btc_block_utxo_facts", "core.btc_block_spent_by_day")
TX_COLUMNS = ("utxo_output_count", "utxo_output_value_sat", "utxo_output_script_bytes")
BACKBONE_COLUMNS = ("utxo_count_total", "utxo_size_inc_bytes_10m", "utxo_set_size_total_bytes")
START = datetime(2024, 1, 1, tzinfo=UTC)


def coin_age_metrics(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    return conn.execute(
        "SELECT metric_name, \"interval\", output_table FROM core.metric_registry WHERE factor = 'coin_age'"
        ' ORDER BY "interval", metric_name'
    ).fetchall()


def _has_timescaledb(conn: psycopg.Connection) -> bool:
    return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()[0])


def relation_bytes(conn: psycopg.Connection, relation: str) -> int:
    """Table + indexes + TOAST (hypertable_size for a TimescaleDB hypertable: its chunks)."""
    hypertable = (
        _has_timescaledb(conn)
        and conn.execute(
            "SELECT EXISTS (SELECT 1 FROM _timescaledb_catalog.hypertable AS h"
            " WHERE format('%%I.%%I', h.schema_name, h.table_name) = %s)",
            (relation,),
        ).fetchone()[0]
    )
    query = "SELECT hypertable_size(%s::regclass)" if hypertable else "SELECT pg_total_relation_size(%s::regclass)"
    return int(conn.execute(query, (relation,)).fetchone()[0] or 0)


def column_bytes(conn: psycopg.Connection, table: str, columns: tuple[str, ...]) -> int:
    total = " + ".join(f"coalesce(pg_column_size({c}), 0)" for c in columns)
    return int(conn.execute(f"SELECT coalesce(sum({total}), 0) FROM {table}").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--tx-per-block", type=int, default=300)
    parser.add_argument("--split-days", type=int, help="measure the daily split before/after (see above)")
    parser.add_argument("--split-blocks-per-day", type=int, default=24)
    parser.add_argument("--split-spend-days", type=int, default=20)
    args = parser.parse_args()
    if args.split_days:
        print(machine_line())
        with bench_database() as url, psycopg.connect(url) as conn:
            split_benchmark(conn, args.split_days, args.split_blocks_per_day, args.split_spend_days)
        return
    blocks = args.days * 144
    until = START + timedelta(days=args.days + 1)
    print(machine_line())
    node_args = ("--synthetic", "--start-height", "0", "--start-time", START.isoformat())
    node_args += ("--txs-per-block", str(args.tx_per_block), "--count", str(blocks))
    with SimNodeProcess(*node_args) as node, bench_database() as url:
        t = time.perf_counter()
        with psycopg.connect(url) as conn:
            report = backfill(
                conn, node.rpc(), "full", IngestOptions(verbosity=3), show_progress=False, build_until=until
            )
            with conn.transaction():
                conn.execute(VENUE_ROWS)
                conn.execute("SELECT * FROM core.compose_btc_price_10m()")
            conn.execute("ANALYZE")
            conn.commit()
            (txs, known, staged) = conn.execute(
                "SELECT (SELECT count(*) FROM raw.btc_tx_raw),"
                " (SELECT count(*) FILTER (WHERE prevouts_known) FROM core.btc_block_utxo_facts),"
                " (SELECT count(*) FROM raw.btc_prevout_stage)"
            ).fetchone()
            conn.commit()
        assert staged == 0, f"{staged} prevout stage rows left between batches"
        with psycopg.connect(url, autocommit=True) as auto:
            refresh_rollups(auto)
        print(
            f"set-up: {report.blocks:,} blocks from genesis, {txs:,} tx, {known:,} blocks with prevouts,"
            f" ingest + prices + rollups in {time.perf_counter() - t:.1f}s"
        )

        with psycopg.connect(url) as conn:
            t = time.perf_counter()
            steps = run_metrics(conn)
            assert all(s.status in ("ok", "up_to_date") for s in steps), [s for s in steps if s.status != "ok"]
            print(f"all metrics once: {len(steps)} steps in {time.perf_counter() - t:.2f}s")
            total_sec = 0.0
            registered = coin_age_metrics(conn)
            conn.commit()
            for metric, interval, table in registered:
                with conn.transaction():
                    conn.execute(f"TRUNCATE core.{table}")
                    conn.execute(
                        "DELETE FROM core.sync_checkpoints"
                        " WHERE component = core.checkpoint_component('metric', %s, %s) AND \"interval\" = %s",
                        (metric, interval, interval),
                    )
                t = time.perf_counter()
                steps = run_metrics(conn, metric=metric, interval=interval)
                sec = time.perf_counter() - t
                total_sec += sec
                rows = sum(s.row_count for s in steps)
                assert all(s.status in ("ok", "up_to_date") for s in steps), steps
                print(f"rebuild {metric} {interval}: {rows:,} rows in {sec:.2f}s = {rows / sec:,.0f} rows/s")
            print(f"rebuild of every coin-age metric: {total_sec:.2f}s for {txs:,} tx")

            print("storage per transaction:")
            parts = {"raw.btc_tx_raw utxo_output_* columns": column_bytes(conn, "raw.btc_tx_raw", TX_COLUMNS)}
            for table in FACT_TABLES:
                parts[table] = relation_bytes(conn, table)
            parts["core.btc_primitive_10m UTXO columns"] = column_bytes(
                conn, "core.btc_primitive_10m", BACKBONE_COLUMNS
            )
            metric_tables = [f"core.{t}" for _, _, t in registered]
            parts[f"coin-age metric tables ({len(metric_tables)})"] = sum(
                relation_bytes(conn, t) for t in metric_tables
            )
            (spent_rows,) = conn.execute("SELECT count(*) FROM core.btc_block_spent_by_day").fetchone()
            (inputs,) = conn.execute("SELECT coalesce(sum(input_count), 0) FROM core.btc_block_utxo_facts").fetchone()
            for name, size in parts.items():
                print(f"  {name}: {size:,} B = {size / txs:.1f} B/tx")
            total = sum(parts.values())
            print(f"  total: {total:,} B = {total / txs:.1f} B/tx")
            print(
                f"  btc_block_spent_by_day: {spent_rows:,} rows for {inputs:,} spent inputs ({report.blocks:,} blocks)"
            )


# The daily split as 085 computed it up to revision 0014 (core.btc_unspent_by_created_day then): for every
# day, every earlier creation and every earlier spend. Kept here only to measure against.
BEFORE_SPLIT = """
CREATE FUNCTION pg_temp.unspent_by_created_day_before(p_from_day date, p_to_day date)
RETURNS TABLE (day date, known boolean, created_day date, age_days integer, unspent_sat bigint)
LANGUAGE sql STABLE
AS $$
    WITH days AS (
        SELECT
            g.day::date AS day,
            (SELECT b.utxo_value_x_created_epoch IS NOT NULL
             FROM core.btc_block_coin_age AS b
             WHERE b.day <= g.day::date
             ORDER BY b.height DESC LIMIT 1) AS known
        FROM generate_series(p_from_day, p_to_day, INTERVAL '1 day') AS g (day)
    ),
    created AS (
        SELECT b.day, sum(b.created_utxo_value_sat) AS value_sat
        FROM core.btc_block_coin_age AS b
        WHERE b.day <= p_to_day
        GROUP BY b.day
    ),
    spent AS (
        SELECT b.day AS spend_day, s.created_day, sum(s.value_sat) AS value_sat
        FROM core.btc_block_spent_by_day AS s
        INNER JOIN core.btc_block_coin_age AS b ON s.spend_height = b.height
        WHERE b.day <= p_to_day
        GROUP BY b.day, s.created_day
    ),
    moves AS (
        SELECT d.day, c.day AS created_day, c.value_sat
        FROM days AS d
        INNER JOIN created AS c ON c.day <= d.day
        WHERE d.known
        UNION ALL
        SELECT d.day, s.created_day, -s.value_sat
        FROM days AS d
        INNER JOIN spent AS s ON s.spend_day <= d.day
        WHERE d.known
    )
    SELECT d.day, true, m.created_day, (d.day - m.created_day)::integer, sum(m.value_sat)::bigint
    FROM days AS d
    INNER JOIN moves AS m ON d.day = m.day
    WHERE d.known
    GROUP BY d.day, m.created_day
    UNION ALL
    SELECT d.day, false, NULL::date, NULL::integer, NULL::bigint
    FROM days AS d
    WHERE d.known IS NOT true
$$;
"""

SPLIT_START = datetime(2009, 1, 3, tzinfo=UTC)


def write_split_facts(conn: psycopg.Connection, days: int, blocks_per_day: int, spend_days: int) -> None:
    """The facts the daily split reads, generated set-based: blocks evenly over the days, each creating 50 BTC
    and spending, from spend_days creation days before or on its own (ages log-uniform up to the chain's
    age: mostly young, some old), 1/(4 x spend_days) of a block's creation each. Every other column of
    core.btc_primitive_block: 0, '' or false (NOT NULL) or NULL."""
    fixed = {
        "height": "g.h",
        "block_hash": "md5(g.h::text)",
        "block_time": "g.t",
        "median_time": "g.t",
        "event_time": "g.t",
        "bucket_start_utc": "core.bucket_10m(g.t)",
    }
    columns = conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'core' AND table_name = 'btc_primitive_block' ORDER BY ordinal_position"
    ).fetchall()
    exprs = []
    for name, data_type, nullable in columns:
        if name in fixed:
            exprs.append(fixed[name])
        elif nullable == "YES":
            exprs.append("NULL")
        else:
            exprs.append({"boolean": "false", "text": "''"}.get(data_type, "0"))
    interval = 86400 / blocks_per_day
    series = (
        f"SELECT h, %(start)s::timestamptz + make_interval(secs => h * {interval}) AS t"
        f" FROM generate_series(0, {days * blocks_per_day - 1}) AS h"
    )
    with conn.transaction():
        conn.execute(
            f"INSERT INTO core.btc_primitive_block ({', '.join(c[0] for c in columns)})"
            f" SELECT {', '.join(exprs)} FROM ({series}) AS g",
            {"start": SPLIT_START},
        )
        conn.execute(
            "INSERT INTO core.btc_block_spent_by_day (spend_height, created_day, output_count, value_sat,"
            " value_x_created_epoch, young_count, young_value_sat)"
            " SELECT s.h, s.created_day, count(*), sum(%(each)s)::bigint, 0, 0, 0 FROM ("
            "  SELECT g.h, (g.t AT TIME ZONE 'UTC')::date - floor(exp(random() * ln(1 + g.h / %(bpd)s)))::integer"
            "   + 1 AS created_day"
            f"  FROM ({series}) AS g CROSS JOIN generate_series(1, %(spend)s) AS j WHERE g.h >= %(bpd)s"
            " ) AS s GROUP BY s.h, s.created_day",
            {
                "start": SPLIT_START,
                "bpd": blocks_per_day,
                "spend": spend_days,
                "each": 5_000_000_000 // (4 * spend_days),
            },
        )
        conn.execute(
            "INSERT INTO core.btc_block_utxo_facts (height, created_utxo_value_sat, input_count, prevouts_known,"
            " spent_undated_count, utxo_value_x_created_epoch)"
            " SELECT pb.height, 5000000000, 0, true, 0, 0 FROM core.btc_primitive_block AS pb"
        )
        conn.execute(BEFORE_SPLIT)
    conn.execute("ANALYZE")


def split_benchmark(conn: psycopg.Connection, days: int, blocks_per_day: int, spend_days: int) -> None:
    t = time.perf_counter()
    write_split_facts(conn, days, blocks_per_day, spend_days)
    (blocks, spends) = conn.execute(
        "SELECT (SELECT count(*) FROM core.btc_primitive_block), (SELECT count(*) FROM core.btc_block_spent_by_day)"
    ).fetchone()
    print(
        f"facts: {days:,} days, {blocks:,} blocks, {spends:,} btc_block_spent_by_day rows"
        f" ({spends / max(blocks - blocks_per_day, 1):.1f} creation days per block), written in"
        f" {time.perf_counter() - t:.1f}s"
    )
    first = SPLIT_START.date()
    # What the before side visits for the days up to T: every creation day and every (spend day, creation
    # day) pair up to T, for each day: per day, those counts' running sums.
    per_day = conn.execute(
        "SELECT x.day, count(*) FILTER (WHERE x.kind = 'created'), count(*) FILTER (WHERE x.kind = 'spent') FROM ("
        " SELECT DISTINCT b.day, 'created' AS kind, NULL::date AS created_day FROM core.btc_block_coin_age AS b"
        " UNION ALL SELECT DISTINCT b.day, 'spent', s.created_day FROM core.btc_block_spent_by_day AS s"
        " JOIN core.btc_block_coin_age AS b ON s.spend_height = b.height) AS x GROUP BY x.day ORDER BY x.day"
    ).fetchall()
    visits_upto, running, total = {}, 0, 0
    for day, created, pairs in per_day:
        running += created + pairs
        total += running
        visits_upto[day] = total
    prefixes = sorted({max(days // 8, 2), max(days // 4, 2), max(days // 2, 2), days})
    before_budget = 300.0  # seconds: the before side of a longer prefix is estimated, not run
    rate = None  # rows visited per second by the before side, from the last prefix it ran
    for n in prefixes:
        last = first + timedelta(days=n - 1)
        visits = visits_upto[last]
        with conn.transaction():
            conn.execute("TRUNCATE core.btc_utxo_age_day")
            t = time.perf_counter()
            conn.execute("SELECT core.build_btc_utxo_age_days(%s, %s)", (first, last))
            (after_rows,) = conn.execute(
                "SELECT count(*) FROM core.btc_unspent_by_created_day(%s, %s)", (first, last)
            ).fetchone()
            after = time.perf_counter() - t
        line = f"{n:,} days: after {after:.2f}s ({after_rows:,} split rows)"
        estimate = visits / rate if rate else 0.0
        if estimate <= before_budget:
            t = time.perf_counter()
            (before_rows,) = conn.execute(
                "SELECT count(*) FROM pg_temp.unspent_by_created_day_before(%s, %s)", (first, last)
            ).fetchone()
            before = time.perf_counter() - t
            rate = visits / before
            t = time.perf_counter()
            (differ,) = conn.execute(
                "SELECT count(*) FROM ((SELECT * FROM pg_temp.unspent_by_created_day_before(%(a)s, %(b)s)"
                " EXCEPT ALL SELECT * FROM core.btc_unspent_by_created_day(%(a)s, %(b)s))"
                " UNION ALL (SELECT * FROM core.btc_unspent_by_created_day(%(a)s, %(b)s)"
                " EXCEPT ALL SELECT * FROM pg_temp.unspent_by_created_day_before(%(a)s, %(b)s))) AS d",
                {"a": first, "b": last},
            ).fetchone()
            assert differ == 0 and before_rows == after_rows, (n, differ, before_rows, after_rows)
            line += (
                f", before {before:.2f}s ({visits:,} rows visited, {rate:,.0f}/s): {before / after:.1f}x;"
                f" identical rows (compared in {time.perf_counter() - t:.1f}s)"
            )
        else:
            line += f", before not run: ~{estimate:,.0f}s for its {visits:,} rows visited at {rate:,.0f}/s"
        print(line)

    # The lane's steady state: one new day on top of the stored snapshots (built above for every day).
    last = first + timedelta(days=days - 1)
    with conn.transaction():
        t = time.perf_counter()
        conn.execute("SELECT core.build_btc_utxo_age_days(%s, %s)", (last, last))
        after = time.perf_counter() - t
        conn.execute("DELETE FROM core.btc_utxo_age_day WHERE day = %s", (last - timedelta(days=1),))
        t = time.perf_counter()
        conn.execute("SELECT core.build_btc_utxo_age_days(%s, %s)", (last, last))
        no_snapshot = time.perf_counter() - t
    t = time.perf_counter()
    conn.execute("SELECT count(*) FROM pg_temp.unspent_by_created_day_before(%s, %s)", (last, last)).fetchone()
    before = time.perf_counter() - t
    print(
        f"one new day ({days:,} days stored): after {after * 1000:.0f} ms from the day before's snapshot,"
        f" {no_snapshot * 1000:.0f} ms without it (its base from all {spends:,} spend rows);"
        f" before {before * 1000:.0f} ms: {before / after:.1f}x"
    )


if __name__ == "__main__":
    main()
