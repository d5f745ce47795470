"""Writes mapped blocks: one transaction per batch holding the raw rows, the SQL builders and the checkpoint."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from app.btc.mapper import BLOCK_COLUMNS, PREVOUT_COLUMNS, TX_COLUMNS, MappedBlock
from app.db import EngineInfo, engine_info, require_idle

# Column types for the unnest() INSERT used where COPY is not available.
BLOCK_TYPES = (
    "bigint",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "integer",
    "integer",
    "integer",
    "integer",
    "numeric",
    "text",
    "bigint",
    "text",
    "text",
    "bigint",
)
TX_TYPES = (
    "bigint",
    "integer",
    "bytea",
    "integer",
    "integer",
    "integer",
    "boolean",
    "boolean",
    "integer",
    "integer",
    "bigint",
    "bigint",
    "integer",
    "bigint",
    "bigint",
)
PREVOUT_TYPES = ("bigint", "bigint", "bigint", "integer", "boolean")
INSERT_CHUNK_ROWS = 20_000


class ChainMismatchError(RuntimeError):
    """The batch does not extend the stored chain (SQLSTATE MQ001): the node reorganised."""


class BlockWriter:
    """Writes contiguous batches of mapped blocks through core.begin_block_batch / core.finish_block_batch."""

    def __init__(self, conn: psycopg.Connection, method: str = "auto"):
        self.conn = conn
        self.info: EngineInfo = engine_info(conn)
        if method == "auto":
            method = "copy" if self.info.supports_copy else "insert"
        if method == "copy" and not self.info.supports_copy:
            raise ValueError("this database engine cannot take COPY; use MQNODE_DB_WRITE_METHOD=insert")
        self.method = method

    def write_batch(self, blocks: Sequence[MappedBlock]) -> int:
        """Write one contiguous batch atomically; returns the raw checkpoint height after it."""
        if not blocks:
            raise ValueError("empty batch")
        heights = [b.height for b in blocks]
        if heights != list(range(heights[0], heights[0] + len(heights))):
            raise ValueError(f"batch heights are not contiguous: {heights[0]}..{heights[-1]}")
        for parent, child in zip(blocks, blocks[1:], strict=False):
            if child.previous_block_hash != parent.block_hash:
                raise ChainMismatchError(
                    f"block {child.height} does not build on {parent.height} ({parent.block_hash}) within the batch"
                )
        require_idle(self.conn, "write_batch (one transaction per batch)")
        first, last = heights[0], heights[-1]
        block_rows = [b.block_row for b in blocks]
        tx_rows = [row for b in blocks for row in b.tx_rows]
        prevout_rows = [row for b in blocks for row in b.prevout_rows]
        try:
            with self.conn.transaction():
                self.conn.execute("SELECT core.begin_block_batch(%s, %s)", (first, last))
                self._write("raw.btc_blocks_raw", BLOCK_COLUMNS, BLOCK_TYPES, block_rows)
                self._write("raw.btc_tx_raw", TX_COLUMNS, TX_TYPES, tx_rows)
                # Transient: core.finish_block_batch turns them into the UTXO / coin-age facts and deletes them.
                self._write("raw.btc_prevout_stage", PREVOUT_COLUMNS, PREVOUT_TYPES, prevout_rows)
                (checkpoint,) = self.conn.execute("SELECT core.finish_block_batch(%s, %s)", (first, last)).fetchone()
        except psycopg.Error as exc:
            if getattr(exc, "sqlstate", None) == "MQ001":
                raise ChainMismatchError(str(exc.diag.message_primary or exc)) from exc
            raise
        return checkpoint

    def _write(self, table: str, columns: Sequence[str], types: Sequence[str], rows: list[tuple]) -> None:
        if not rows:
            return
        column_list = ", ".join(columns)
        if self.method == "copy":
            with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({column_list}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        arrays = ", ".join(f"%s::{t}[]" for t in types)
        sql = f"INSERT INTO {table} ({column_list}) SELECT * FROM unnest({arrays})"
        for start in range(0, len(rows), INSERT_CHUNK_ROWS):
            chunk = rows[start : start + INSERT_CHUNK_ROWS]
            self.conn.execute(sql, [list(col) for col in zip(*chunk, strict=True)])
