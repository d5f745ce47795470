"""Compression on TimescaleDB: what gets compressed, and that no result depends on it.

The time-partitioned hypertables are compressed by core.compress_settled_chunks jobs (revision 0005),
which compress a chunk only once it ends `keep` before the slowest writer's checkpoint, never by the wall
clock (a sync writes years-old buckets). Whatever is compressed, a reorg that rewrites compressed rows
must end identical to a clean ingest.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from app.btc.listener import ChainListener
from tests.chainrows import chain_snapshot
from tests.conftest import wait_until
from tests.test_reorg import OPTIONS, UNTIL, clean_ingest_snapshot, synthetic_node  # noqa: F401 (fixture)


def chunk_states(conn: psycopg.Connection, table: str) -> list[tuple[datetime, bool]]:
    schema, name = table.split(".")
    return conn.execute(
        "SELECT range_end, is_compressed FROM timescaledb_information.chunks"
        " WHERE hypertable_schema = %s AND hypertable_name = %s ORDER BY range_start",
        (schema, name),
    ).fetchall()


def test_settled_chunks_only(ts_url):
    """A composer at 2024-06-30: the 90-day chunks of mq_btc_price_10m that end 180 days before it are
    compressed, the later ones stay as they are; without any progress nothing is."""
    with psycopg.connect(ts_url, autocommit=True) as conn:
        job, config = conn.execute(
            "SELECT job_id, config FROM timescaledb_information.jobs"
            " WHERE proc_name = 'compress_settled_chunks' AND config ->> 'hypertable' = 'core.mq_btc_price_10m'"
        ).fetchone()
        assert config == {
            "hypertable": "core.mq_btc_price_10m",
            "keep": "180 days",
            "frontier_checkpoints": ["btc_price_canonical_composer:10m"],
        }
        # The test runs the job by hand (a scheduled run at the same time would skip: one run per table).
        conn.execute("SELECT alter_job(%s, scheduled => false)", (job,))
        # One row a day through 2023 and the first half of 2024 (old enough for any wall-clock policy).
        conn.execute(
            "INSERT INTO core.mq_btc_price_10m (bucket_start_utc, composition_method)"
            " SELECT g, 'volume_weighted_ohlc_v1'"
            " FROM generate_series(TIMESTAMPTZ '2023-01-01', '2024-06-30', INTERVAL '1 day') AS g"
        )
        conn.execute(
            "SELECT core.set_checkpoint('btc', 'btc_price_canonical_composer', '10m', NULL, %s)",
            (datetime(2023, 3, 1, tzinfo=UTC),),
        )
        conn.execute("CALL core.compress_settled_chunks(%s, %s)", (job, psycopg.types.json.Jsonb(config)))
        assert not any(compressed for _, compressed in chunk_states(conn, "core.mq_btc_price_10m"))

        conn.execute(
            "SELECT core.set_checkpoint('btc', 'btc_price_canonical_composer', '10m', NULL, %s)",
            (datetime(2024, 6, 30, tzinfo=UTC),),
        )
        limit = datetime(2024, 6, 30, tzinfo=UTC) - (datetime(2024, 1, 1) - datetime(2023, 7, 5))  # 180 days

        def compressed_as_settled():
            # A scheduled run that began before the job was paused may hold the table: then call again.
            conn.execute("CALL core.compress_settled_chunks(%s, %s)", (job, psycopg.types.json.Jsonb(config)))
            states = chunk_states(conn, "core.mq_btc_price_10m")
            return states if [c for _, c in states] == [end <= limit for end, _ in states] else None

        states = wait_until(compressed_as_settled, timeout=60, interval=0.5)
        assert any(c for _, c in states) and not all(c for _, c in states)
        # Compressed rows still read and update like any other.
        conn.execute("UPDATE core.mq_btc_price_10m SET source_count = 0 WHERE bucket_start_utc = '2023-01-05'")
        assert conn.execute("SELECT count(*) FROM core.mq_btc_price_10m").fetchone()[0] == 547


def compress_everything(conn: psycopg.Connection) -> int:
    """Compress every chunk of every hypertable that has compression set (as if every policy had run)."""
    return conn.execute(
        "SELECT count(compress_chunk(c, if_not_compressed => true))"
        " FROM timescaledb_information.hypertables AS h,"
        " LATERAL show_chunks(format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass) AS c"
        " WHERE h.compression_enabled"
    ).fetchone()[0]


def test_reorg_over_compressed_chunks_equals_clean_ingest(ts_url, synthetic_node):  # noqa: F811
    rpc = synthetic_node.rpc()
    with psycopg.connect(ts_url) as conn:
        listener = ChainListener(conn, rpc, OPTIONS, clock=lambda: UNTIL)
        listener.sync_once()
        conn.commit()
        assert compress_everything(conn) >= 4
        conn.commit()
        rpc.call("simreorg", 3)
        listener.sync_once()
        after = chain_snapshot(conn)
        conn.commit()
    assert after["raw.btc_blocks_raw"][-1][0] == rpc.get_block_count()
    assert clean_ingest_snapshot(ts_url, synthetic_node) == after


@pytest.mark.parametrize("table", ["raw.btc_tx_raw", "raw.btc_blocks_raw", "core.btc_primitive_block"])
def test_height_tables_keep_their_policies(ts_url, table):
    """Height-partitioned tables keep TimescaleDB's policy: its "now" is the best stored height."""
    schema, name = table.split(".")
    with psycopg.connect(ts_url) as conn:
        row = conn.execute(
            "SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_schema = %s AND hypertable_name = %s",
            (schema, name),
        ).fetchone()
    assert row == ("policy_compression",)
