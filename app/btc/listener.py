"""`mqnode btc listen`: follow the node's tip block by block and keep the 10m timeline current.

Each loop: record the node tip (btc_node_tip:block), compare the raw checkpoint with it; ingest
checkpoint + 1 .. tip (detecting and resolving reorgs), build the 10m backbone after every committed
batch, and when idle still advance the timeline to the current bucket. NOTIFY raw_block_ready /
primitive_ready are sent by the SQL functions and delivered on commit. It runs as the lane "chain"
(app/lanes.py): a pass is the lane's step, the poll interval its timer, a failed pass marks the raw
checkpoint as error with the message and is retried with the lanes' backoff, every pass ends with a
heartbeat in worker_chain:heartbeat, and stop() ends it between batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from app.btc import chain_sync
from app.btc.chain_sync import BUILDER_COMPONENT, RAW_COMPONENT, IngestOptions
from app.btc.rpc import BitcoinRpc
from app.btc.writer import BlockWriter
from app.lanes import Lane
from app.settings import Settings

log = logging.getLogger(__name__)
LANE = "chain"  # heartbeat: worker_chain:heartbeat


def utc_now() -> datetime:
    return datetime.now(UTC)


class ChainListener:
    """Keeps the database on the node's best chain. `database_url` lets the lane replace a broken
    connection (without it a broken connection ends run() with the error)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        rpc: BitcoinRpc,
        options: IngestOptions,
        start_height: int = 0,
        poll_interval_sec: float = Settings.btc_poll_interval_sec,
        clock: Callable[[], datetime] = utc_now,
        write_method: str = "auto",
        database_url: str | None = None,
        error_backoff_sec: float = Settings.lane_error_backoff_sec,
        max_backoff_sec: float = Settings.lane_max_backoff_sec,
    ):
        self.conn = conn
        self.rpc = rpc
        self.options = options
        self.start_height = start_height
        self.clock = clock
        self.write_method = write_method
        self.writer = BlockWriter(conn, write_method)
        self.lane = Lane(
            LANE,
            database_url,
            self._step,
            interval_sec=poll_interval_sec,
            error_backoff_sec=error_backoff_sec,
            max_backoff_sec=max_backoff_sec,
            connection=conn,
            on_error=lambda conn, message: chain_sync.record_error(conn, RAW_COMPONENT, message),
        )

    def build_timeline(self, to_now: bool = True) -> None:
        """Build the 10m backbone: through the newest block, and on to the current bucket when to_now."""
        chain_sync.build_timeline(self.conn, self.clock() if to_now else None)

    def _after_batch(self, _height: int) -> None:
        self.build_timeline(to_now=False)
        self.lane.between_units(self.conn)  # a long catch-up is not a stale lane

    def sync_once(self) -> int:
        """One pass: reorg check, ingest up to the node tip, build the timeline. Returns blocks written."""
        tip = self.rpc.get_block_count()
        chain_sync.record_node_tip(self.conn, tip)
        stored = chain_sync.stored_tip(self.conn)
        if stored is not None:
            height, block_hash = stored
            node_hash = self.rpc.get_block_hash(height) if height <= tip else None
            if node_hash != block_hash:
                chain_sync.resolve_reorg(self.conn, self.rpc, min(height, tip), "listener")
                stored = chain_sync.stored_tip(self.conn)
        next_height = stored[0] + 1 if stored else self.start_height
        written = 0
        while next_height <= tip and not self.lane.stop_event.is_set():
            result = chain_sync.ingest_range(
                self.conn,
                self.rpc,
                next_height,
                tip,
                self.options,
                writer=self.writer,
                # While catching up, build only through the newest block: advancing to now after every
                # batch would rewrite every bucket between an old block and now again and again.
                after_batch=self._after_batch,
                should_stop=self.lane.stop_event.is_set,  # SIGTERM ends a long catch-up after its current batch
            )
            written += result.blocks
            if result.mismatch_at is not None:
                chain_sync.resolve_reorg(self.conn, self.rpc, result.mismatch_at - 1, "listener")
                tip = self.rpc.get_block_count()
            stored = chain_sync.stored_tip(self.conn)
            next_height = stored[0] + 1 if stored else self.start_height
            if result.blocks == 0 and result.mismatch_at is None:
                break
        self.build_timeline()
        return written

    def _step(self, conn: psycopg.Connection) -> bool:
        """The lane's step: one pass; more is waiting when it wrote blocks (then no sleep before the next)."""
        if conn is not self.conn:  # the lane replaced a broken connection
            self.conn, self.writer = conn, BlockWriter(conn, self.write_method)
        written = self.sync_once()
        chain_sync.clear_error(self.conn, RAW_COMPONENT)
        chain_sync.clear_error(self.conn, BUILDER_COMPONENT)
        if written:
            log.info("ingested %d block(s); raw checkpoint %s", written, chain_sync.raw_checkpoint(self.conn))
        return written > 0

    def run(self, once: bool = False) -> bool:
        """Loop until stop() (or after one pass with once=True). Returns False when the last pass failed."""
        return self.lane.run(once=once)

    def stop(self) -> None:
        self.lane.stop()
