"""Reorgs of depth 1..6 end with tables identical to a clean ingest of the winning chain (both engines)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from app.btc.backfill import backfill, reconcile
from app.btc.chain_sync import IngestOptions
from app.btc.listener import ChainListener
from tests.chainrows import chain_snapshot
from tests.conftest import reset_engine_tables
from tests.simnode_proc import SimNodeProcess

UNTIL = datetime(2024, 1, 2, tzinfo=UTC)
OPTIONS = IngestOptions(batch_blocks=4, fetch_workers=3)


def clean_ingest_snapshot(url: str, node: SimNodeProcess) -> dict:
    reset_engine_tables(url)
    with psycopg.connect(url) as conn:
        backfill(conn, node.rpc(), "full", OPTIONS, show_progress=False, build_until=UNTIL)
        return chain_snapshot(conn)


@pytest.fixture
def synthetic_node():
    args = (
        "--synthetic",
        "--start-height",
        "0",
        "--count",
        "40",
        "--txs-per-block",
        "12",
        "--start-time",
        "2024-01-01T00:00:00Z",
        "--seed",
        "7",
    )
    with SimNodeProcess(*args) as node:
        yield node


def test_reorgs_of_depth_1_to_6(db_url, synthetic_node):
    rpc = synthetic_node.rpc()
    for depth in range(1, 7):
        with psycopg.connect(db_url) as conn:
            listener = ChainListener(conn, rpc, OPTIONS, clock=lambda: UNTIL)
            listener.sync_once()
            old_tip = rpc.get_block_count()
            old_hashes = rpc.get_block_hashes(list(range(old_tip - depth + 1, old_tip + 1)))
            rpc.call("simreorg", depth)
            listener.sync_once()
            after = chain_snapshot(conn)
            event = conn.execute(
                "SELECT fork_height, depth, orphaned_block_hashes, detected_by FROM core.btc_reorg_events"
                " ORDER BY reorg_id DESC LIMIT 1"
            ).fetchone()
            conn.commit()
        assert event == (old_tip - depth, depth, old_hashes, "listener"), depth
        assert after["raw.btc_blocks_raw"][-1][0] == rpc.get_block_count()
        assert clean_ingest_snapshot(db_url, synthetic_node) == after, f"depth {depth}"


def test_reconcile_repairs_drift(db_url, synthetic_node):
    rpc = synthetic_node.rpc()
    with psycopg.connect(db_url) as conn:
        backfill(conn, rpc, "full", OPTIONS, show_progress=False, build_until=UNTIL)
        clean = reconcile(conn, rpc, OPTIONS, build_until=UNTIL)
        assert (clean.checked, clean.first_mismatch) == (40, None)
        tip = rpc.get_block_count()
        # The node reorganises 3 deep and is not followed; reconcile finds and repairs the drift.
        rpc.call("simreorg", 3, 0)
        report = reconcile(conn, rpc, OPTIONS, build_until=UNTIL)
        assert (report.first_mismatch, report.reorg_depth, report.reingested) == (tip - 2, 3, 3)
        repaired = chain_snapshot(conn)
    assert clean_ingest_snapshot(db_url, synthetic_node) == repaired
