"""`mqnode btc backfill` and `mqnode btc reconcile`: bulk ingestion with progress, and drift repair."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from app.btc import chain_sync
from app.btc.chain_sync import IngestOptions
from app.btc.rpc import BitcoinRpc
from app.btc.writer import BlockWriter
from app.progress import Progress

log = logging.getLogger(__name__)

MODES = ("resume", "full", "range")


@dataclass
class BackfillReport:
    start: int
    end: int
    blocks: int
    transactions: int
    reorgs: int
    raw_checkpoint: int | None


def backfill(
    conn: psycopg.Connection,
    rpc: BitcoinRpc,
    mode: str,
    options: IngestOptions,
    start_height: int | None = None,
    end_height: int | None = None,
    write_method: str = "auto",
    show_progress: bool = True,
    build_until: datetime | None = None,
) -> BackfillReport:
    """Ingest a height range and rebuild the 10m timeline over it.

    resume: raw checkpoint + 1 (or --start-height, default 0, when none) .. node tip
    full:   --start-height (default 0) .. node tip, replacing what is stored
    range:  --start-height .. --end-height exactly; need not touch stored heights
    """
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}")
    tip = rpc.get_block_count()
    if mode == "range":
        if start_height is None or end_height is None:
            raise ValueError("--mode range needs --start-height and --end-height")
        start, end = start_height, end_height
    elif mode == "full":
        start, end = (start_height or 0), (end_height if end_height is not None else tip)
    else:
        checkpoint = chain_sync.raw_checkpoint(conn)
        start = checkpoint + 1 if checkpoint is not None else (start_height or 0)
        end = end_height if end_height is not None else tip
    if start < 0 or end < start - 1:
        raise ValueError(f"bad height range {start}..{end}")
    if end > tip:
        raise ValueError(f"end height {end} is above the node tip {tip}")

    writer = BlockWriter(conn, write_method)
    progress = Progress("backfill", end - start + 1, "blocks") if show_progress else None
    report = BackfillReport(start, end, 0, 0, 0, None)
    next_height = start
    while next_height <= end:
        result = chain_sync.ingest_range(conn, rpc, next_height, end, options, writer=writer, progress=progress)
        report.blocks += result.blocks
        report.transactions += result.transactions
        if result.mismatch_at is None:
            break
        report.reorgs += 1
        chain_sync.resolve_reorg(conn, rpc, result.mismatch_at - 1, f"backfill:{mode}")
        stored = chain_sync.stored_tip(conn)
        next_height = min(result.mismatch_at, stored[0] + 1 if stored else start)
    if progress:
        progress.finish()
    timeline = Progress("10m timeline", None, "buckets") if show_progress else None
    chain_sync.build_timeline(conn, build_until or datetime.now(UTC), progress=timeline)
    if timeline:
        timeline.finish()
    report.raw_checkpoint = chain_sync.raw_checkpoint(conn)
    return report


@dataclass
class ReconcileReport:
    checked: int
    first_mismatch: int | None
    reorg_depth: int
    reingested: int


def reconcile(
    conn: psycopg.Connection,
    rpc: BitcoinRpc,
    options: IngestOptions,
    from_height: int | None = None,
    write_method: str = "auto",
    chunk: int = 2000,
    build_until: datetime | None = None,
) -> ReconcileReport:
    """Compare every stored block hash (from from_height up) with the node; repair the first drift.

    Repair = drop the stored blocks from the first mismatching height up (logged in btc_reorg_events),
    re-ingest from there to the node tip and rebuild the 10m timeline.
    """
    (low, high) = conn.execute("SELECT min(height), max(height) FROM raw.btc_blocks_raw").fetchone()
    conn.commit()
    if low is None:
        return ReconcileReport(0, None, 0, 0)
    tip = rpc.get_block_count()
    low = max(low, from_height or 0)
    checked = 0
    first_mismatch = None
    for start in range(low, high + 1, chunk):
        rows = conn.execute(
            "SELECT height, block_hash FROM raw.btc_blocks_raw WHERE height BETWEEN %s AND %s ORDER BY height",
            (start, min(start + chunk - 1, high)),
        ).fetchall()
        conn.commit()
        on_node = [(h, s) for h, s in rows if h <= tip]
        node_hashes = rpc.get_block_hashes([h for h, _ in on_node])
        checked += len(rows)
        mismatches = [h for (h, stored), node in zip(on_node, node_hashes, strict=True) if stored != node]
        if len(on_node) < len(rows):
            mismatches.append(rows[len(on_node)][0])
        if mismatches:
            first_mismatch = min(mismatches)
            break
    if first_mismatch is None:
        return ReconcileReport(checked, None, 0, 0)
    log.warning("stored chain differs from the node from height %d", first_mismatch)
    if first_mismatch == 0:
        raise RuntimeError("stored genesis differs from the node's: wrong network? re-create the database")
    with conn.transaction():
        (depth,) = conn.execute(
            "SELECT core.apply_btc_reorg(%s, %s, %s)",
            (first_mismatch - 1, rpc.get_block_hash(tip), "reconcile"),
        ).fetchone()
    writer = BlockWriter(conn, write_method)
    result = chain_sync.ingest_range(conn, rpc, first_mismatch, tip, options, writer=writer)
    chain_sync.build_timeline(conn, build_until or datetime.now(UTC))
    return ReconcileReport(checked, first_mismatch, depth, result.blocks)
