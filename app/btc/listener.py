"""`mqnode btc listen`: follow the node's tip block by block and keep the 10m timeline current.

Each loop: record the node tip (btc_node_tip:block), compare the raw checkpoint with it; ingest
checkpoint + 1 .. tip (detecting and resolving reorgs), build the 10m backbone after every committed
batch, and when idle still advance the timeline to the current bucket. NOTIFY raw_block_ready /
primitive_ready are sent by the SQL functions and delivered on commit. Failures mark the checkpoint as
error with the message and are retried. Every pass ends with a heartbeat in worker_chain:heartbeat.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from app.btc import chain_sync
from app.btc.chain_sync import BUILDER_COMPONENT, RAW_COMPONENT, IngestOptions
from app.btc.mapper import MalformedBlockError
from app.btc.rpc import BitcoinRpc, RpcError
from app.btc.writer import BlockWriter
from app.lanes import Heartbeat

log = logging.getLogger(__name__)
LANE = "chain"  # heartbeat: worker_chain:heartbeat


def utc_now() -> datetime:
    return datetime.now(UTC)


class ChainListener:
    """Keeps the database on the node's best chain."""

    def __init__(
        self,
        conn: psycopg.Connection,
        rpc: BitcoinRpc,
        options: IngestOptions,
        start_height: int = 0,
        poll_interval_sec: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
        write_method: str = "auto",
    ):
        self.conn = conn
        self.rpc = rpc
        self.options = options
        self.start_height = start_height
        self.poll_interval_sec = poll_interval_sec
        self.clock = clock
        self.writer = BlockWriter(conn, write_method)
        self.stop_event = threading.Event()
        self.heartbeat = Heartbeat(LANE)

    def build_timeline(self, to_now: bool = True) -> None:
        """Build the 10m backbone: through the newest block, and on to the current bucket when to_now."""
        chain_sync.build_timeline(self.conn, self.clock() if to_now else None)

    def _after_batch(self, _height: int) -> None:
        self.build_timeline(to_now=False)
        self.heartbeat.beat_if_due(self.conn)  # a long catch-up is not a stale lane

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
        while next_height <= tip and not self.stop_event.is_set():
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
                should_stop=self.stop_event.is_set,  # SIGTERM ends a long catch-up after its current batch
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

    def run(self, once: bool = False) -> None:
        """Loop until stop() (or after one pass with once=True)."""
        while not self.stop_event.is_set():
            try:
                written = self.sync_once()
                chain_sync.clear_error(self.conn, RAW_COMPONENT)
                chain_sync.clear_error(self.conn, BUILDER_COMPONENT)
                self.heartbeat.beat(self.conn)
                if written:
                    log.info("ingested %d block(s); raw checkpoint %s", written, chain_sync.raw_checkpoint(self.conn))
            except (RpcError, MalformedBlockError, psycopg.Error, RuntimeError) as exc:
                message = f"{type(exc).__name__}: {exc}"
                log.error("chain lane error (will retry): %s", message)
                if self.conn.closed:
                    raise
                chain_sync.record_error(self.conn, RAW_COMPONENT, message)
                self.heartbeat.beat(self.conn, message)
                if once:
                    raise
                written = 0
            if once:
                return
            if not written:
                self.stop_event.wait(self.poll_interval_sec)

    def stop(self) -> None:
        self.stop_event.set()
