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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
