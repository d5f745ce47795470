"""Hand-made raw chain rows for SQL tests: tiny blocks whose every consequence is known."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import psycopg


def fake_hash(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


@dataclass
class Tx:
    """One transaction fact; the coinbase is the first tx of a block."""

    output_value_sat: int
    fee_sat: int | None = None
    vsize: int = 200
    size: int = 250
    segwit: bool = False
    inputs: int = 1
    outputs: int = 2


@dataclass
class Block:
    height: int
    time: datetime
    median_time: datetime
    coinbase_sat: int
    txs: list[Tx] = field(default_factory=list)
    branch: str = "a"
    size: int = 1000
    weight: int = 4000

    def hash(self) -> str:
        return fake_hash(f"{self.branch}-{self.height}")


def parent_hash(blocks: list[Block], block: Block) -> str | None:
    if block.height == 0:
        return None
    parent = next((b for b in blocks if b.height == block.height - 1), None)
    return parent.hash() if parent else fake_hash(f"a-{block.height - 1}")


def insert_blocks(conn: psycopg.Connection, blocks: list[Block]) -> None:
    """Write raw rows the way the loader does (one batch), then run core.finish_block_batch."""
    heights = [b.height for b in blocks]
    with conn.transaction():
        conn.execute("SELECT core.begin_block_batch(%s, %s)", (min(heights), max(heights)))
        for b in blocks:
            conn.execute(
                "INSERT INTO raw.btc_blocks_raw (height, block_hash, previous_block_hash, block_time, median_time,"
                " tx_count, size, stripped_size, weight, difficulty, chainwork, version, merkle_root, bits, nonce)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s, '1d00ffff', 0)",
                (
                    b.height,
                    b.hash(),
                    parent_hash(blocks, b),
                    b.time,
                    b.median_time,
                    1 + len(b.txs),
                    b.size,
                    b.size,
                    b.weight,
                    1 + b.height,
                    f"{b.height + 1:064x}",
                    fake_hash(f"merkle-{b.height}"),
                ),
            )
            rows = [
                (
                    b.height,
                    0,
                    bytes.fromhex(fake_hash(f"cb-{b.branch}-{b.height}")),
                    150,
                    150,
                    600,
                    True,
                    False,
                    1,
                    1,
                    b.coinbase_sat,
                    None,
                )
            ]
            for i, tx in enumerate(b.txs, start=1):
                rows.append(
                    (
                        b.height,
                        i,
                        bytes.fromhex(fake_hash(f"tx-{b.branch}-{b.height}-{i}")),
                        tx.size,
                        tx.vsize,
                        tx.vsize * 4,
                        False,
                        tx.segwit,
                        tx.inputs,
                        tx.outputs,
                        tx.output_value_sat,
                        tx.fee_sat,
                    )
                )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO raw.btc_tx_raw (height, tx_index, txid, size, vsize, weight, is_coinbase,"
                    " is_segwit, input_count, output_count, output_value_sat, fee_sat)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
        conn.execute("SELECT core.finish_block_batch(%s, %s)", (min(heights), max(heights)))


def table_rows(conn: psycopg.Connection, table: str, order_by: str) -> list[tuple]:
    rows = conn.execute(f"SELECT * FROM {table} ORDER BY {order_by}").fetchall()
    conn.commit()
    return rows


CHAIN_TABLES = (
    ("raw.btc_blocks_raw", "height"),
    ("raw.btc_tx_raw", "height, tx_index"),
    ("core.btc_primitive_block", "height"),
    ("core.btc_primitive_10m", "bucket_start_utc"),
)


def chain_snapshot(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """Every row of the chain tables, for identical-result comparisons."""
    return {table: table_rows(conn, table, order) for table, order in CHAIN_TABLES}
