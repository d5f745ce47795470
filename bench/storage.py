"""Bytes per transaction of the per-transaction facts on plain PostgreSQL and on TimescaleDB after compression.

For each engine a throwaway cluster (TimescaleDB: shared_preload_libraries = 'timescaledb'), migrated to
head; N blocks of T synthetic transactions written as the loader writes them (raw.btc_tx_raw) and
core.build_primitive_block run over them (core.btc_block_fee_facts, the per-block sorted fee arrays:
per-transaction data too). Transaction fields are hash-random (sizes 150..1050 bytes, weight within 4 x
vsize, 1..3 inputs/outputs, values up to 1,000 BTC, feerates 1..300 sat/vB; txids 32 random bytes), not
periodic in tx_index, so the compression ratio is not flattered by repeated values.
On TimescaleDB the compression policies run as configured (CALL run_job): their "now" is the best stored
height, so one header-only block row 20,000 heights above the data makes the data's chunks old enough
(as they would be after 20,000 more blocks of a sync; the fee facts chunks span 10,000 heights).
Printed per engine and table: rows, bytes (table + indexes + TOAST, all chunks) and bytes per transaction;
and raw.btc_tx_raw with the layout of revision 0007 (txid as hex text, the block time on every row; on
TimescaleDB orderby tx_index, compressed with compress_chunk) holding a copy of the same rows.
Usage: python -m bench.storage [--blocks 576] [--tx-per-block 2500] [--engines postgres,timescaledb]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import time
from pathlib import Path

import psycopg

from app.embedded_pg import EmbeddedPostgres
from app.migrations import upgrade_database
from bench.build import COINBASE_PAYOUT, GENERATE_BLOCKS
from bench.common import machine_line

FIRST = 840000

GENERATE_TXS = """
INSERT INTO raw.btc_tx_raw (height, tx_index, txid, size, vsize, weight, is_coinbase, is_segwit,
                            input_count, output_count, output_value_sat, fee_sat)
SELECT s.height, s.i, s.txid, s.size, s.vsize, 4 * s.vsize - s.wdrop, s.i = 0, s.i = 0 OR s.r %% 4 <> 0,
       CASE WHEN s.i = 0 THEN 1 ELSE 1 + (s.r / 4) %% 3 END, 1 + (s.r / 12) %% 3,
       CASE WHEN s.i = 0 THEN 312500000 ELSE (s.r / 36) %% 100000000000 END,
       CASE WHEN s.i = 0 THEN NULL ELSE s.vsize * (1 + (abs(hashint8(s.height * 100000 + s.i + 1)) %% 300)) END
FROM (
    SELECT b.height, i,
           decode(md5(b.height::text || ':' || i::text) || md5(i::text || ':' || b.height::text), 'hex') AS txid,
           150 + abs(hashint8(b.height * 100000 + i + 2)) %% 900 AS size,
           110 + abs(hashint8(b.height * 100000 + i + 3)) %% 700 AS vsize,
           abs(hashint8(b.height * 100000 + i + 4)) %% 4 AS wdrop,
           abs(hashint8(b.height * 100000 + i)) AS r
    FROM raw.btc_blocks_raw AS b, generate_series(0, %(tx)s - 1) AS i
    WHERE b.height BETWEEN %(first)s AND %(last)s
) AS s
"""

# The far block: a header-only row (no transactions) 20,000 heights above the data.
FAR_BLOCK = """
INSERT INTO raw.btc_blocks_raw (height, block_hash, previous_block_hash, block_time, median_time, tx_count, size,
                                stripped_size, weight, difficulty, chainwork, version, merkle_root, bits, nonce)
SELECT %(h)s, lpad(to_hex(%(h)s), 64, '0'), lpad(to_hex(%(h)s - 1), 64, '0'), now(), now(), 1, 1, 1, 4, 1,
       lpad(to_hex(%(h)s), 64, '0'), 1, lpad(to_hex(%(h)s), 64, '0'), '1d00ffff', 0
"""

# raw.btc_tx_raw as revision 0007 left it, filled with a copy of the same rows.
LAYOUT_0007 = """
CREATE TABLE public.bench_tx_raw_0007 (
    height bigint NOT NULL, event_time timestamptz NOT NULL, tx_index integer NOT NULL, txid text NOT NULL,
    size integer NOT NULL, vsize integer, weight integer, is_coinbase boolean NOT NULL, is_segwit boolean NOT NULL,
    input_count integer NOT NULL, output_count integer NOT NULL, output_value_sat bigint NOT NULL, fee_sat bigint,
    PRIMARY KEY (height, tx_index)
);
"""
FILL_0007 = """
INSERT INTO public.bench_tx_raw_0007
SELECT t.height, coalesce(b.median_time, b.block_time), t.tx_index, encode(t.txid, 'hex'), t.size, t.vsize,
       t.weight, t.is_coinbase, t.is_segwit, t.input_count, t.output_count, t.output_value_sat, t.fee_sat
FROM raw.btc_tx_raw AS t INNER JOIN raw.btc_blocks_raw AS b ON t.height = b.height;
"""
HYPERTABLE_0007 = "SELECT create_hypertable('public.bench_tx_raw_0007', by_range('height', 2000))"
COMPRESS_0007 = """
ALTER TABLE public.bench_tx_raw_0007 SET (timescaledb.compress, timescaledb.compress_orderby = 'tx_index');
SELECT compress_chunk(c) FROM show_chunks('public.bench_tx_raw_0007') AS c;
"""

TABLES = ("raw.btc_tx_raw", "core.btc_block_fee_facts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table_bytes(conn: psycopg.Connection, table: str, timescaledb: bool) -> int:
    if timescaledb:
        row = conn.execute("SELECT sum(total_bytes)::bigint FROM hypertable_detailed_size(%s::regclass)", (table,))
        (value,) = row.fetchone()
        if value is not None:
            return value
    (value,) = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()
    return value


def run_compression_policies(conn: psycopg.Connection) -> None:
    jobs = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'"
        " AND format('%%I.%%I', hypertable_schema, hypertable_name) = ANY(%s)",
        (list(TABLES),),
    ).fetchall()
    conn.commit()
    conn.autocommit = True  # the policy procedure commits between chunks
    try:
        for (job_id,) in jobs:
            conn.execute("CALL run_job(%s)", (job_id,))
    finally:
        conn.autocommit = False


def measure(engine: str, blocks: int, tx: int) -> None:
    base = Path(tempfile.mkdtemp(prefix=f"mqnode-bench-storage-{engine}-"))
    base.chmod(0o755)
    settings = {"shared_preload_libraries": "timescaledb", "timescaledb.telemetry_level": "off"}
    server = EmbeddedPostgres(
        base / "cluster", free_port(), database="bench", server_settings=settings if engine == "timescaledb" else {}
    )
    server.start()
    try:
        upgrade_database(server.url)
        last = FIRST + blocks - 1
        params = {"first": FIRST, "last": last, "tx": tx, "layout": "poisson"}
        with psycopg.connect(server.url) as conn:
            t = time.perf_counter()
            with conn.transaction():
                conn.execute(GENERATE_BLOCKS, params)
                conn.execute(GENERATE_TXS, params)
                conn.execute(COINBASE_PAYOUT, params)
                conn.execute("SELECT core.build_primitive_block(%s, %s)", (FIRST, last))
            timescaledb = engine == "timescaledb"
            with conn.transaction():
                conn.execute(LAYOUT_0007)
                if timescaledb:
                    conn.execute(HYPERTABLE_0007)
                conn.execute(FILL_0007)
            if timescaledb:
                with conn.transaction():
                    conn.execute(FAR_BLOCK, {"h": last + 20000})
                run_compression_policies(conn)
                with conn.transaction():
                    conn.execute(COMPRESS_0007)
            tables = [*TABLES, "public.bench_tx_raw_0007"]
            (n,) = conn.execute("SELECT count(*) FROM raw.btc_tx_raw").fetchone()
            print(f"{engine}: {blocks:,} blocks x {tx:,} tx = {n:,} transactions in {time.perf_counter() - t:.1f}s")
            total = 0
            for table in tables:
                size = table_bytes(conn, table, timescaledb)
                if timescaledb:
                    (chunks, compressed) = conn.execute(
                        "SELECT count(*), count(*) FILTER (WHERE is_compressed) FROM timescaledb_information.chunks"
                        " WHERE format('%%I.%%I', hypertable_schema, hypertable_name) = %s",
                        (table,),
                    ).fetchone()
                    state = f", {compressed} of {chunks} chunks compressed"
                else:
                    state = ""
                if table != "public.bench_tx_raw_0007":
                    total += size
                print(f"  {table}: {size:,} bytes = {size / n:.1f} bytes/tx{state}")
            print(f"  per-transaction facts (raw.btc_tx_raw + core.btc_block_fee_facts): {total / n:.1f} bytes/tx")
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=576)
    parser.add_argument("--tx-per-block", type=int, default=2500)
    parser.add_argument("--engines", default="postgres,timescaledb")
    args = parser.parse_args()
    print(machine_line())
    for engine in args.engines.split(","):
        measure(engine, args.blocks, args.tx_per_block)


if __name__ == "__main__":
    main()
