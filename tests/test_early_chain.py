"""The real early mainnet chain (heights 0-438) through sim-node -> loader -> SQL, against Coin Metrics.

Coin Metrics' published daily figures for 2009-01-03..12 (tests/fixtures/coinmetrics) must come out of
btc_primitive_10m summed per UTC day: BlkCnt, BlkSizeByte, TxCnt (non-coinbase), IssTotNtv, FeeTotNtv,
SplyCur and DiffMean. Both database engines must produce identical tables.
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg

from app.btc.backfill import backfill
from app.btc.chain_sync import IngestOptions
from tests.chainrows import chain_snapshot
from tests.simnode_proc import FIXTURES, SimNodeProcess

UNTIL = datetime(2009, 1, 15, tzinfo=UTC)

DAILY = """
SELECT (bucket_start_utc AT TIME ZONE 'UTC')::date AS day,
       sum(block_count) AS blocks,
       sum(block_size_total_bytes_10m) AS size_bytes,
       sum(non_coinbase_tx_count_10m) AS tx,
       sum(issued_sat_10m) AS issued_sat,
       sum(fees_sat_10m) AS fee_sat,
       (array_agg(supply_total_sat ORDER BY bucket_start_utc DESC))[1] AS supply_sat
FROM core.btc_primitive_10m
GROUP BY 1 ORDER BY 1
"""


def coin_metrics_rows() -> dict[date, dict[str, str]]:
    path = FIXTURES / "coinmetrics" / "btc_format_sample_2009-01-03_to_2009-01-12.csv"
    with path.open() as f:
        return {date.fromisoformat(r["time"]): r for r in csv.DictReader(f)}


def sat(btc: str) -> int:
    return int(Decimal(btc) * 100_000_000)


def ingest_early_chain(url: str, node: SimNodeProcess) -> None:
    with psycopg.connect(url) as conn:
        report = backfill(
            conn, node.rpc(), "full", IngestOptions(batch_blocks=100), show_progress=False, build_until=UNTIL
        )
    assert (report.start, report.end, report.blocks, report.raw_checkpoint) == (0, 438, 439, 438)


def test_daily_figures_match_coin_metrics(db_url, early_node):
    ingest_early_chain(db_url, early_node)
    with psycopg.connect(db_url) as conn:
        ours = {row[0]: row[1:] for row in conn.execute(DAILY).fetchall()}
        (blocks, txs, supply) = conn.execute(
            "SELECT count(*), sum(tx_count), max(cumulative_supply_sat) FROM core.btc_primitive_block"
        ).fetchone()
    assert (blocks, supply) == (439, 438 * 50 * 100_000_000)
    reference = coin_metrics_rows()
    assert sorted(reference) == [date(2009, 1, d) for d in range(3, 13)]
    for day, cm in reference.items():
        blocks, size_bytes, tx, issued, fees, supply = ours.get(day, (0, 0, 0, 0, 0, None))
        assert blocks == int(float(cm["BlkCnt"])), day
        assert size_bytes == int(float(cm["BlkSizeByte"])), day
        assert tx == int(float(cm["TxCnt"])), day
        assert fees == sat(cm["FeeTotNtv"]), day
        assert issued == sat(cm["IssTotNtv"] or "0"), day
        assert (supply or 0) == sat(cm["SplyCur"]), day
    # Days before the first mined block (2009-01-04..08) are in the continuous timeline, all empty.
    assert all(ours[date(2009, 1, d)][0] == 0 for d in range(4, 9))


def test_engines_produce_identical_tables(pg_url, ts_url, early_node):
    ingest_early_chain(pg_url, early_node)
    ingest_early_chain(ts_url, early_node)
    with psycopg.connect(pg_url) as pg, psycopg.connect(ts_url) as ts:
        pg_rows = chain_snapshot(pg)
        pg.close()
        ts_rows = chain_snapshot(ts)
    for table in pg_rows:
        assert len(pg_rows[table]) > 0, table
        assert pg_rows[table] == ts_rows[table], table
