"""Moves the node's best chain into the database: ingest ranges, detect and apply reorgs, build the 10m timeline.

The listener, backfill and reconcile commands are thin loops around these functions.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from app import checkpoints
from app.btc.mapper import MappedBlock, btc_to_sat, map_block
from app.btc.rawblock import map_raw_parts
from app.btc.rpc import BitcoinRpc, RpcError
from app.btc.writer import BlockWriter, ChainMismatchError
from app.db import require_idle
from app.progress import Progress
from app.settings import Settings

log = logging.getLogger(__name__)

RAW_COMPONENT = checkpoints.RAW_BLOCKS
BUILDER_COMPONENT = checkpoints.PRIMITIVE_10M
ANCESTOR_WINDOW = 200


@dataclass(frozen=True)
class IngestOptions:
    """How blocks are fetched and grouped into database transactions."""

    verbosity: int = 3  # 3: prevouts (coin-age facts) when the node has them (Bitcoin Core >= 23), else 2
    fetch_workers: int = 4
    batch_blocks: int = 50
    batch_max_tx: int = 100_000
    decode_processes: int = 0
    process_min_blocks: int = 100
    source: str = "json"  # "rest": Core's REST raw blocks + spent outputs (app/btc/rawblock.py)

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestOptions:
        return cls(
            verbosity=settings.btc_getblock_verbosity,
            fetch_workers=settings.btc_fetch_workers,
            batch_blocks=settings.btc_batch_blocks,
            batch_max_tx=settings.btc_batch_max_tx,
            decode_processes=settings.btc_decode_processes,
            source=settings.btc_block_source,
        )


class BlockPrunedError(RpcError):
    """The node knows a best-chain block's header but no longer has its data (a pruned node)."""

    def __init__(self, height: int, reason: str, code: int | None, prune_height: int | None):
        keeps = f"it keeps blocks from height {prune_height} on" if prune_height is not None else "see its pruneheight"
        super().__init__(
            "getblock",
            f"block {height} was pruned by the node ({reason!r}; {keeps}). MQNODE needs every block it ingests:"
            " point MQNODE_BTC_RPC_URL at a node without -prune, or start above the pruned range"
            " (--start-height / MQNODE_BTC_START_HEIGHT; supply is then not known)",
            code,
        )
        self.height = height
        self.prune_height = prune_height


def _fetch_error(rpc: BitcoinRpc, exc: RpcError, height: int) -> RpcError:
    """The error to report for a failed fetch of ``height``: Core's "Block not available (pruned data)"
    (code -1) names neither the height nor what to do, so it becomes a BlockPrunedError."""
    if isinstance(exc, BlockPrunedError) or "pruned" not in (exc.reason or "").lower():
        return exc
    try:
        prune_height = rpc.call("getblockchaininfo").get("pruneheight")
    except RpcError:
        prune_height = None
    return BlockPrunedError(height, exc.reason, exc.code, prune_height)


@dataclass
class IngestResult:
    blocks: int = 0
    transactions: int = 0
    checkpoint_height: int | None = None
    mismatch_at: int | None = None


def raw_checkpoint(conn: psycopg.Connection) -> int | None:
    row = conn.execute(
        'SELECT last_height FROM core.sync_checkpoints WHERE chain = %s AND component = %s AND "interval" = %s',
        RAW_COMPONENT,
    ).fetchone()
    conn.commit()
    return None if row is None else row[0]


def record_chain(conn: psycopg.Connection, rpc: BitcoinRpc) -> str:
    """Record the node's network (getblockchaininfo.chain) in core.chain_params before blocks are written.

    The SQL derives the chain's parameters (the halving interval) from it; a database holding blocks of
    another chain refuses (SQLSTATE MQ003, naming both) instead of mixing chains.
    """
    chain = rpc.chain()
    with conn.transaction():
        conn.execute("SELECT core.set_chain(%s)", (chain,))
    return chain


PREVOUT_MIN_VERSION = 230000  # getblock verbosity 3 (inputs' prevouts) exists from Bitcoin Core 23.0 on


def getblock_verbosity(rpc: BitcoinRpc, wanted: int) -> int:
    """The getblock verbosity to use: 3 only when the node serves prevouts (getnetworkinfo.version >= 23.0).

    Without prevouts (verbosity 2) the blocks' spent outputs are unknown: SQL records prevouts_known = false
    and every UTXO column and coin-age metric of those blocks stays NULL (never a zero). Asked once per client.
    """
    if wanted < 3:
        log.warning(
            "getblock verbosity %d: no prevouts, so the UTXO set columns and coin-age metrics stay NULL"
            " (MQNODE_BTC_GETBLOCK_VERBOSITY=3 needs Bitcoin Core >= 23)",
            wanted,
        )
        return wanted
    version = getattr(rpc, "_mqnode_node_version", None)
    if version is None:
        try:
            version = int(rpc.call("getnetworkinfo").get("version") or 0)
        except RpcError as exc:
            log.warning("getnetworkinfo failed (%s): assuming a node without getblock verbosity 3", exc)
            version = 0
        rpc._mqnode_node_version = version
    if version < PREVOUT_MIN_VERSION:
        log.warning(
            "the node (version %d) is older than Bitcoin Core 23 and has no getblock verbosity 3: blocks are read"
            " without prevouts, so the UTXO set columns and coin-age metrics stay NULL",
            version,
        )
        return 2
    return wanted


def seed_utxo_set(conn: psycopg.Connection, rpc: BitcoinRpc, height: int) -> bool:
    """For a chain stored from above height 1: the UTXO set after ``height`` (the block below the first one
    stored) from the node's ``gettxoutsetinfo none <height>`` into core.btc_utxo_seed, the base the UTXO
    columns and the supply carry forward (core.btc_utxo_base and core.btc_supply_base in
    sql/functions/025_btc_utxo_facts.sql: the supply starts from total_amount). Needs a node with
    -coinstatsindex; without it those columns, market cap and NVT stay NULL (logged). The coin-age state
    metrics (realized cap, MVRV, age bands) stay NULL either way: the seed has no creation times.
    """
    try:
        info = rpc.call("gettxoutsetinfo", "none", height, True)
        block_hash = str(info.get("bestblock") or rpc.get_block_hash(height))
        row = (
            height,
            block_hash,
            int(info["txouts"]),
            btc_to_sat(info["total_amount"], "gettxoutsetinfo"),
            int(info["bogosize"]),
        )
    except (RpcError, KeyError, TypeError, ValueError) as exc:
        log.warning(
            "no UTXO set snapshot at height %d from the node (%s): the supply (so market cap and NVT) and the UTXO"
            " set columns stay NULL for a chain stored from height %d (run Bitcoin Core with -coinstatsindex=1)",
            height,
            exc,
            height + 1,
        )
        return False
    with conn.transaction():
        conn.execute(
            "INSERT INTO core.btc_utxo_seed (height, block_hash, utxo_count, utxo_value_sat, utxo_bogo_bytes, source)"
            " VALUES (%s, %s, %s, %s, %s, 'gettxoutsetinfo') ON CONFLICT (height) DO UPDATE SET"
            " block_hash = excluded.block_hash, utxo_count = excluded.utxo_count,"
            " utxo_value_sat = excluded.utxo_value_sat, utxo_bogo_bytes = excluded.utxo_bogo_bytes,"
            " recorded_at = now()",
            row,
        )
    return True


def needs_utxo_seed(conn: psycopg.Connection, start: int) -> bool:
    """Whether a range starting at ``start`` lacks the UTXO state below it (no block and no seed there)."""
    if start <= 1:
        return False
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM raw.btc_blocks_raw WHERE height = %s)"
        " OR EXISTS (SELECT 1 FROM core.btc_utxo_seed WHERE height = %s)",
        (start - 1, start - 1),
    ).fetchone()
    conn.commit()
    return not row[0]


def record_error(conn: psycopg.Connection, component: tuple[str, str, str], message: str) -> None:
    """Mark a checkpoint as failed (own transaction; the failed one is rolled back first)."""
    conn.rollback()
    with conn.transaction():
        conn.execute("SELECT core.checkpoint_error(%s, %s, %s, %s)", (*component, message))


def record_node_tip(conn: psycopg.Connection, tip: int) -> None:
    """Remember the node's tip height as last seen (btc_node_tip:block; health reports the lag to it)."""
    with conn.transaction():
        conn.execute("SELECT core.set_checkpoint(%s, %s, %s, %s, NULL)", (*checkpoints.NODE_TIP, tip))


def clear_error(conn: psycopg.Connection, component: tuple[str, str, str]) -> None:
    with conn.transaction():
        conn.execute("SELECT core.checkpoint_ok(%s, %s, %s)", component)


def ingest_range(
    conn: psycopg.Connection,
    rpc: BitcoinRpc,
    start: int,
    end: int,
    options: IngestOptions,
    writer: BlockWriter | None = None,
    progress: Progress | None = None,
    after_batch: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> IngestResult:
    """Fetch and write heights start..end in batches (one transaction each).

    ``should_stop`` (a lane's SIGTERM) is asked after every committed batch: a long catch-up then ends
    at a batch boundary, and the next run resumes from the checkpoint.

    Stops early with ``mismatch_at`` set when a block does not extend the stored chain (a reorg);
    the caller resolves it with :func:`resolve_reorg` and calls again. A block the node cannot serve
    (RpcError; pruned: BlockPrunedError naming the height) stops it after the blocks below it are
    written, with the error on the raw checkpoint; a later pass that writes blocks clears it.
    """
    writer = writer or BlockWriter(conn)
    result = IngestResult()
    if end < start:
        return result
    record_chain(conn, rpc)  # every loader (listen, backfill, reconcile) writes blocks through here
    if needs_utxo_seed(conn, start):
        seed_utxo_set(conn, rpc, start - 1)
    batch: list[MappedBlock] = []
    batch_tx = 0

    def flush() -> None:
        nonlocal batch, batch_tx
        if not batch:
            return
        if progress:
            with progress.stages.timed("write_batch"):  # COPY + core.begin/finish_block_batch, one transaction
                result.checkpoint_height = writer.write_batch(batch)
        else:
            result.checkpoint_height = writer.write_batch(batch)
        result.blocks += len(batch)
        result.transactions += batch_tx
        if progress:
            progress.advance(len(batch), batch_tx)
        if after_batch:
            after_batch(batch[-1].height)
        batch, batch_tx = [], 0

    timed_rpc = progress is not None and rpc.stage_times is None
    if timed_rpc:
        rpc.stage_times = progress.stages  # rpc_fetch, json_decode and map seconds of this range
    rest = options.source == "rest"
    blocks = rpc.iter_blocks(
        list(range(start, end + 1)),
        2 if rest else getblock_verbosity(rpc, options.verbosity),
        options.fetch_workers,
        transform=map_raw_parts if rest else map_block,
        # Worker processes pay a start-up cost: worth it for bulk ranges, not for the next block at the tip.
        processes=options.decode_processes if end - start + 1 >= options.process_min_blocks else 0,
        source=options.source,
    )
    # Decoded blocks are large trees of acyclic containers: the cyclic GC would rescan them over and
    # over for nothing (a third of the loader's time). Reference counting frees them as usual.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    next_height = start  # the height the next fetched block will have
    try:
        for mapped in blocks:
            if batch and mapped.previous_block_hash != batch[-1].block_hash:
                flush()
                result.mismatch_at = mapped.height
                return result
            batch.append(mapped)
            batch_tx += len(mapped.tx_rows)
            next_height = mapped.height + 1
            if len(batch) >= options.batch_blocks or batch_tx >= options.batch_max_tx:
                flush()
                if should_stop is not None and should_stop():
                    log.info("stopping after height %d (asked to stop between batches)", mapped.height)
                    return result
        flush()
    except ChainMismatchError as exc:
        log.warning("chain mismatch while writing: %s", exc)
        result.mismatch_at = batch[0].height if batch else start
    except RpcError as exc:
        error = _fetch_error(rpc, exc, next_height)
        flush()  # keep what was fetched below the failing height
        record_error(conn, RAW_COMPONENT, f"{type(error).__name__}: {error}")
        if error is exc:
            raise
        raise error from exc
    finally:
        blocks.close()
        if timed_rpc:
            rpc.stage_times = None
        if gc_was_enabled:
            gc.enable()
    if result.blocks:
        clear_error(conn, RAW_COMPONENT)
    return result


def find_common_ancestor(conn: psycopg.Connection, rpc: BitcoinRpc, from_height: int) -> int | None:
    """Highest stored height at or below from_height whose hash the node also has at that height."""
    height = from_height
    while height >= 0:
        low = max(0, height - ANCESTOR_WINDOW + 1)
        rows = conn.execute(
            "SELECT height, block_hash FROM raw.btc_blocks_raw WHERE height BETWEEN %s AND %s ORDER BY height DESC",
            (low, height),
        ).fetchall()
        conn.commit()
        if rows:
            node_hashes = rpc.get_block_hashes([h for h, _ in rows])
            for (h, stored), node in zip(rows, node_hashes, strict=True):
                if stored == node:
                    return h
        height = low - 1
    return None


def resolve_reorg(conn: psycopg.Connection, rpc: BitcoinRpc, suspect_height: int, detected_by: str) -> int:
    """Find the common ancestor below suspect_height, drop the orphaned blocks, log the event. Returns depth."""
    tip = rpc.get_block_count()
    ancestor = find_common_ancestor(conn, rpc, min(suspect_height, tip))
    new_tip_hash = rpc.get_block_hash(tip)
    if ancestor is None:
        # Nothing stored matches the node: treat everything as orphaned from below the lowest stored block.
        (low,) = conn.execute("SELECT min(height) FROM raw.btc_blocks_raw").fetchone()
        conn.commit()
        if low is None:
            return 0
        raise RuntimeError(
            f"no stored block at or below height {suspect_height} matches the node: is MQNODE_BTC_RPC_URL"
            " pointing at another network? Re-ingest with `mqnode btc backfill --mode full`."
        )
    with conn.transaction():
        (depth,) = conn.execute(
            "SELECT core.apply_btc_reorg(%s, %s, %s)", (ancestor, new_tip_hash, detected_by)
        ).fetchone()
    if depth:
        log.warning("reorg: %d block(s) above height %d orphaned; following tip %s", depth, ancestor, new_tip_hash)
    return depth


def stored_tip(conn: psycopg.Connection) -> tuple[int, str] | None:
    row = conn.execute(
        "SELECT b.height, b.block_hash FROM raw.btc_blocks_raw AS b"
        ' JOIN core.sync_checkpoints AS c ON (c.chain, c.component, c."interval") = (%s, %s, %s)'
        " AND b.height = c.last_height",
        RAW_COMPONENT,
    ).fetchone()
    conn.commit()
    return None if row is None else (row[0], row[1])


def build_timeline(
    conn: psycopg.Connection,
    target: datetime | None = None,
    chunk_buckets: int | None = 4320,
    progress: Progress | None = None,
) -> tuple[datetime | None, datetime | None]:
    """Run core.build_primitive_10m until nothing is left to build, one transaction per chunk of buckets.

    Returns (first bucket written, last bucket written), or (None, None) when nothing needed building.
    """
    first = last = None
    while True:
        require_idle(conn, "build_timeline (one transaction per chunk)")
        with conn.transaction():
            row = conn.execute(
                "SELECT from_bucket, to_bucket, bucket_count FROM core.build_primitive_10m(%s, %s)",
                (target, chunk_buckets),
            ).fetchone()
        if row is None:
            return first, last
        from_bucket, to_bucket, count = row
        first = first or from_bucket
        last = to_bucket
        if progress:
            progress.advance(count)
