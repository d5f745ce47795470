"""Prevout resolution inside MQNODE: what a raw-block path (getblock verbosity 0, no input values) pays to
find every spent output's value, creation height, script size and coinbase flag in a UTXO table of its own.

CANDIDATE DESIGN, not the project's schema: the tables below live in a `bench` schema of a throwaway cluster
and exist only in this script (CANDIDATE_DDL). A UTXO table keyed by the outpoint (`--key packed`: one
36-byte bytea, txid || vout big-endian; `--key split`: txid bytea(32) + vout integer), with value, creation
height, script size and coinbase flag. Per loader-like batch (`--batch-tx`, default 100,000 transactions, as
the loader's batches of up to 100,000 tx), in one transaction:
  1. COPY (binary) the batch's new outputs into the UTXO table;
  2. COPY the batch's spent outpoints (with the spending tx and height) into a temp table, and the batch's
     per-transaction output sums into another;
  3. one set-based DELETE ... USING the spent outpoints RETURNING the spent rows (spends of outputs created
     in the same batch included: they were COPYed in step 1), in one statement aggregated into
     - the rows of a copy of raw.btc_prevout_stage (spend_height, created_height, value_sat, script_bytes,
       is_coinbase: the stage contract of sql/functions/025_btc_utxo_facts.sql),
     - each transaction's input total and count, joined to its output sum: fee = inputs - outputs,
     - with `--keep-spent-blocks N`, the spent rows themselves into a keep table (for a reorg to restore),
       pruned to the last N blocks;
  4. the stage rows deleted again (as core.build_block_utxo_facts does after aggregating them); COMMIT.
With `--in-batch client` the spends of outputs created in the same batch are resolved by the client (a
decoder holds the batch's outputs): those outputs are never COPYed into the UTXO table nor deleted from it,
their stage and input rows are COPYed instead. The DELETE runs with hash and merge joins off (index probes;
the planner's own plan, printed as "scans the whole UTXO table" or not, reads every live row at these
sizes, which at mainnet's ~180 M would be per batch) and without JIT.
Every batch is checked: every spent outpoint found, the input totals equal the generator's.

Workload (synthetic, deterministic): transaction serial t has a txid sha256(t as 8 bytes); 2.6 outputs per
transaction (2,3,2,3,3), 2.3 inputs per non-coinbase transaction (2,2,2,3,2,2,3,2,2,3), 2,500 tx per block,
the first of each block a coinbase. Spends pick live outputs by `--age-mix IN,RECENT,OLD` (default
0.25,0.45,0.30: created earlier in the same batch / in the last `--recent-tx` transactions before it /
uniformly anywhere in the live set; an assumed mix, not measured from mainnet). The live set is grown by
set-based INSERTs (through the index, as a chain grows it) to each of `--sizes`; at each size and each
`--shared-buffers` setting (a server restart) `--warm-batches` unmeasured batches, then `--batches` measured
ones: database server CPU (all its processes, /proc, as bench.scale), this process's CPU (COPY
formatting), wall, WAL bytes, per transaction and per spent / created output; then one VACUUM of the UTXO
table (CPU per dead row; autovacuum is off for it so that the batches do not include a random share of it);
bytes of the UTXO table + its index per live output. Engines: plain PostgreSQL 15 and the TimescaleDB
server (timescaledb preloaded, extension created, background workers on); the UTXO table is a plain table
on both (keyed by a hash, it has no time order for a hypertable to use).
Usage: python -m bench.prevouts [--engines postgres,timescaledb] [--sizes 1000000,5000000]
       [--shared-buffers 128MB,2GB] [--batch-tx 100000] [--batches 3] [--key packed|split]
       [--in-batch table|client] [--keep-spent-blocks 0] [--age-mix 0.25,0.45,0.30] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from app.embedded_pg import EmbeddedPostgres
from bench.common import machine_line
from bench.scale import COMMON_SETTINGS, TIMESCALEDB_SETTINGS, free_port, load_average, server_cpu

TX_PER_BLOCK = 2_500
OUT_PATTERN = (2, 3, 2, 3, 3)  # outputs of tx t: OUT_PATTERN[t % 5]; 13 outputs per 5 tx = 2.6
IN_PATTERN = (2, 2, 2, 3, 2, 2, 3, 2, 2, 3)  # inputs of a non-coinbase tx t: IN_PATTERN[t % 10]; 2.3
SCRIPT_BYTES = (22, 25, 34, 23, 67)  # script size of output o: SCRIPT_BYTES[o % 5] (P2WPKH, P2PKH, P2TR, ...)
# output serial o (0, 1, 2, ... over the whole chain) -> (tx serial t, vout): 13 outputs per 5 transactions
OUT_TX = (0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4)
OUT_VOUT = (0, 1, 0, 1, 2, 0, 1, 0, 1, 2, 0, 1, 2)


def out_tx_vout(o: int) -> tuple[int, int]:
    q, r = divmod(o, 13)
    return 5 * q + OUT_TX[r], OUT_VOUT[r]


def first_output(t: int) -> int:
    """Serial of tx t's first output (t a multiple of 5: batches start there)."""
    return t // 5 * 13


def value_of(o: int) -> int:
    return (o * 2654435761) % 100_000_000 + 546


def txid(t: int) -> bytes:
    return hashlib.sha256(t.to_bytes(8, "big")).digest()


# The same functions in SQL, for the set-based growth of the live set (o = output serial).
SQL_TXID = "sha256(int8send(5 * (o / 13) + (ARRAY[0,0,1,1,1,2,2,3,3,3,4,4,4])[o % 13 + 1]))"
SQL_VOUT = "(ARRAY[0,1,0,1,2,0,1,0,1,2,0,1,2])[o % 13 + 1]"
SQL_TX = "(5 * (o / 13) + (ARRAY[0,0,1,1,1,2,2,3,3,3,4,4,4])[o % 13 + 1])"
SQL_COLUMNS = (
    f"(o * 2654435761) % 100000000 + 546, ({SQL_TX} / {TX_PER_BLOCK})::integer,"
    f" (ARRAY[22,25,34,23,67])[o % 5 + 1], {SQL_TX} % {TX_PER_BLOCK} = 0"
)

KEYS = {  # --key: the outpoint's columns, how the client sends them, how SQL builds them from o
    "packed": {
        "columns": "outpoint bytea NOT NULL",
        "names": "outpoint",
        "pk": "outpoint",
        "types": ["bytea"],
        "join": "u.outpoint = s.outpoint",
        "sql": f"{SQL_TXID} || int4send({SQL_VOUT})",
    },
    "split": {
        "columns": "txid bytea NOT NULL, vout integer NOT NULL",
        "names": "txid, vout",
        "pk": "txid, vout",
        "types": ["bytea", "int4"],
        "join": "u.txid = s.txid AND u.vout = s.vout",
        "sql": f"{SQL_TXID}, {SQL_VOUT}",
    },
}


def candidate_ddl(key: str) -> str:
    k = KEYS[key]
    return f"""
-- CANDIDATE DESIGN (bench only, not the project's schema): a raw-block path's UTXO set.
CREATE SCHEMA IF NOT EXISTS bench;
CREATE TABLE bench.btc_utxo (
    {k["columns"]},
    value_sat bigint NOT NULL,
    height integer NOT NULL,
    script_bytes integer NOT NULL,
    is_coinbase boolean NOT NULL,
    PRIMARY KEY ({k["pk"]})
) WITH (autovacuum_enabled = false);
-- The stage contract (raw.btc_prevout_stage, revision 0008): one row per non-coinbase input.
CREATE UNLOGGED TABLE bench.btc_prevout_stage (
    spend_height bigint NOT NULL,
    created_height bigint NOT NULL,
    value_sat bigint NOT NULL CHECK (value_sat >= 0),
    script_bytes integer NOT NULL CHECK (script_bytes >= 0),
    is_coinbase boolean NOT NULL
);
CREATE INDEX ON bench.btc_prevout_stage (spend_height);
-- Spent rows of the last N blocks, for a reorg to put back (--keep-spent-blocks).
CREATE TABLE bench.btc_utxo_spent (
    spend_height integer NOT NULL,
    {k["columns"]},
    value_sat bigint NOT NULL,
    height integer NOT NULL,
    script_bytes integer NOT NULL,
    is_coinbase boolean NOT NULL
);
CREATE INDEX ON bench.btc_utxo_spent (spend_height);
"""


def temp_ddl(key: str) -> str:
    return f"""
CREATE TEMP TABLE batch_spent ({KEYS[key]["columns"]}, spend_tx bigint NOT NULL, spend_height integer NOT NULL)
    ON COMMIT DELETE ROWS;
CREATE TEMP TABLE batch_input (spend_tx bigint NOT NULL, value_sat bigint NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE batch_tx (tx bigint NOT NULL, output_sat bigint NOT NULL) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE batch_fee (tx bigint NOT NULL, input_count integer, input_sat bigint, fee_sat bigint)
    ON COMMIT DELETE ROWS;
"""


def resolve_sql(key: str, keep: bool) -> str:
    """The batch's set-based DELETE: spent rows out of the UTXO set, into the stage rows, the spent values per
    spending tx (and the keep table). Run with index probes forced (see run_batch)."""
    k = KEYS[key]
    returned = ", ".join(f"u.{c.strip()}" for c in k["names"].split(","))
    kept = (
        f"""
kept AS (
    INSERT INTO bench.btc_utxo_spent
    SELECT spend_height, {k["names"]}, value_sat, height, script_bytes, is_coinbase FROM spent
),"""
        if keep
        else ""
    )
    return f"""
WITH spent AS (
    DELETE FROM bench.btc_utxo AS u USING batch_spent AS s
    WHERE {k["join"]}
    RETURNING s.spend_tx, s.spend_height, {returned}, u.value_sat, u.height, u.script_bytes, u.is_coinbase
),
stage AS (
    INSERT INTO bench.btc_prevout_stage (spend_height, created_height, value_sat, script_bytes, is_coinbase)
    SELECT spend_height, height, value_sat, script_bytes, is_coinbase FROM spent
),{kept}
moved AS (INSERT INTO batch_input (spend_tx, value_sat) SELECT spend_tx, value_sat FROM spent RETURNING 1)
SELECT count(*) FROM moved
"""


# Each transaction's input total and count, joined to its output sum: fee = inputs - outputs (the column the
# batch's raw.btc_tx_raw rows would take); totals returned for the check.
FEE_SQL = """
WITH inputs AS (
    SELECT spend_tx, count(*)::integer AS input_count, sum(value_sat)::bigint AS input_sat
    FROM batch_input GROUP BY spend_tx
),
fees AS (
    INSERT INTO batch_fee (tx, input_count, input_sat, fee_sat)
    SELECT t.tx, i.input_count, i.input_sat, i.input_sat - t.output_sat
    FROM batch_tx AS t LEFT JOIN inputs AS i ON t.tx = i.spend_tx
    RETURNING tx, input_count, input_sat
)
SELECT count(*), coalesce(sum(input_count), 0), coalesce(sum(input_sat), 0)::bigint,
       coalesce(sum(input_sat::numeric * tx), 0)
FROM fees
"""


class Workload:
    """The synthetic chain: which outputs are live, the next transaction serial, the batches' spends."""

    def __init__(self, age_mix: tuple[float, float, float], recent_tx: int, seed: int = 1):
        self.live = bytearray()
        self.next_tx = 0
        self.age_mix = age_mix
        self.recent_tx = recent_tx
        self.rng = random.Random(seed)
        self.live_count = 0

    def grow(self, outputs: int) -> tuple[int, int]:
        """Add whole 5-tx groups of never-spent outputs: their output serial range [lo, hi)."""
        groups = -(-outputs // 13)
        lo = first_output(self.next_tx)
        self.next_tx += 5 * groups
        hi = first_output(self.next_tx)
        self.live.extend(b"\x01" * (hi - lo))
        self.live_count += hi - lo
        return lo, hi

    def pick(self, lo: int, hi: int) -> int | None:
        """A live output serial in [lo, hi), marked spent; None when none was found."""
        if hi <= lo:
            return None
        for _ in range(64):
            o = self.rng.randrange(lo, hi)
            if self.live[o]:
                self.live[o] = 0
                return o
        o = self.live.find(1, lo, hi)
        if o < 0:
            return None
        self.live[o] = 0
        return o

    def batch(self, tx_count: int) -> dict:
        """One batch of transactions: its new outputs, spent outputs (with the spending tx) and per-tx sums."""
        tx_count -= tx_count % 5
        t0 = self.next_tx
        o0 = first_output(t0)
        self.next_tx += tx_count
        o1 = first_output(self.next_tx)
        self.live.extend(b"\x01" * (o1 - o0))
        p_in, p_recent, _ = self.age_mix
        recent_lo = max(0, o0 - first_output(self.recent_tx - self.recent_tx % 5))
        spends: list[tuple[int, int]] = []  # (output serial, spending tx)
        counts = {"in_batch": 0, "recent": 0, "old": 0}
        for t in range(t0, self.next_tx):
            if t % TX_PER_BLOCK == 0:
                continue  # coinbase: no prevouts
            for _ in range(IN_PATTERN[t % 10]):
                r = self.rng.random()
                o = None
                if r < p_in:
                    o, kind = self.pick(o0, first_output(t - t % 5)), "in_batch"
                if o is None and r < p_in + p_recent:
                    o, kind = self.pick(recent_lo, o0), "recent"
                if o is None:
                    o, kind = self.pick(0, o0), "old"
                if o is None:
                    raise RuntimeError("the live set ran out of outputs")
                counts[kind] += 1
                spends.append((o, t))
        self.live_count += (o1 - o0) - len(spends)
        return {"t0": t0, "t1": self.next_tx, "o0": o0, "o1": o1, "spends": spends, "kinds": counts}


def output_rows(key: str, o0: int, o1: int):
    cache: dict[int, bytes] = {}
    for o in range(o0, o1):
        t, vout = out_tx_vout(o)
        h = cache.get(t)
        if h is None:
            cache.clear()
            h = cache[t] = txid(t)
        outpoint = (h + vout.to_bytes(4, "big"),) if key == "packed" else (h, vout)
        yield (
            *outpoint,
            value_of(o),
            t // TX_PER_BLOCK,
            SCRIPT_BYTES[o % 5],
            t % TX_PER_BLOCK == 0,
        )


def run_batch(
    conn: psycopg.Connection,
    key: str,
    work: Workload,
    tx_count: int,
    keep_blocks: int,
    explain: bool = False,
    in_batch_client: bool = False,
) -> dict:
    """Generate one batch (not timed), then resolve it in one transaction (timed: server CPU, own CPU, wall).

    in_batch_client: spends of outputs created in the same batch are resolved by the client (it has decoded
    them): those outputs are never COPYed into the UTXO table, their stage and input rows are COPYed."""
    b = work.batch(tx_count)
    in_batch = {o for o, _ in b["spends"] if o >= b["o0"]} if in_batch_client else set()
    new_rows = [
        row
        for o, row in zip(range(b["o0"], b["o1"]), output_rows(key, b["o0"], b["o1"]), strict=True)
        if o not in in_batch
    ]
    client_stage, client_inputs = [], []
    txids = {}
    spent_rows = []
    expected_inputs = 0
    expected_weighted = 0
    for o, t_spend in b["spends"]:
        expected_inputs += value_of(o)
        expected_weighted += value_of(o) * t_spend
        if o in in_batch:
            t = out_tx_vout(o)[0]
            client_stage.append(
                (t_spend // TX_PER_BLOCK, t // TX_PER_BLOCK, value_of(o), SCRIPT_BYTES[o % 5], t % TX_PER_BLOCK == 0)
            )
            client_inputs.append((t_spend, value_of(o)))
            continue
        t, vout = out_tx_vout(o)
        h = txids.get(t) or txids.setdefault(t, txid(t))
        outpoint = (h + vout.to_bytes(4, "big"),) if key == "packed" else (h, vout)
        spent_rows.append((*outpoint, t_spend, t_spend // TX_PER_BLOCK))
    tx_sums: dict[int, int] = {}
    for o in range(b["o0"], b["o1"]):
        t = out_tx_vout(o)[0]
        tx_sums[t] = tx_sums.get(t, 0) + value_of(o)
    tx_rows = list(tx_sums.items())
    lo_height, hi_height = b["t0"] // TX_PER_BLOCK, (b["t1"] - 1) // TX_PER_BLOCK
    key_types = KEYS[key]["types"]

    lsn0 = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    conn.commit()
    cpu_db0, cpu_me0, wall0 = server_cpu(CLUSTER[0]), time.process_time(), time.perf_counter()
    copy_me = 0.0
    steps: dict[str, float] = {}
    last = [cpu_db0]

    def mark(name: str) -> None:  # database CPU of each step (all the cluster's processes)
        now = server_cpu(CLUSTER[0])
        steps[name] = steps.get(name, 0.0) + now - last[0]
        last[0] = now

    with conn.cursor() as cur:
        me = time.process_time()
        with cur.copy(
            f"COPY bench.btc_utxo ({KEYS[key]['names']}, value_sat, height, script_bytes, is_coinbase)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types([*key_types, "int8", "int4", "int4", "bool"])
            for row in new_rows:
                copy.write_row(row)
        mark("copy_outputs")
        with cur.copy(
            f"COPY batch_spent ({KEYS[key]['names']}, spend_tx, spend_height) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types([*key_types, "int8", "int4"])
            for row in spent_rows:
                copy.write_row(row)
        with cur.copy("COPY batch_tx (tx, output_sat) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int8"])
            for row in tx_rows:
                copy.write_row(row)
        if in_batch:
            with cur.copy(
                "COPY bench.btc_prevout_stage (spend_height, created_height, value_sat, script_bytes, is_coinbase)"
                " FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int8", "int8", "int4", "bool"])
                for row in client_stage:
                    copy.write_row(row)
            with cur.copy("COPY batch_input (spend_tx, value_sat) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "int8"])
                for row in client_inputs:
                    copy.write_row(row)
        copy_me = time.process_time() - me
        mark("copy_spends_and_tx")
        plan = None
        if explain:  # the planner's own choice, before the forced plan (not timed apart: one EXPLAIN)
            plan = "\n".join(r[0] for r in cur.execute(f"EXPLAIN {resolve_sql(key, keep_blocks > 0)}").fetchall())
        # Index probes for the DELETE, never a scan of the whole set (the planner's own choice at these sizes:
        # see "plan"); no JIT (the disabled plans' costs would start it: over a second per statement).
        cur.execute("SET LOCAL enable_hashjoin = off")
        cur.execute("SET LOCAL enable_mergejoin = off")
        cur.execute("SET LOCAL jit = off")
        (found,) = cur.execute(resolve_sql(key, keep_blocks > 0)).fetchone()
        mark("delete_returning")
        cur.execute("RESET enable_hashjoin")
        cur.execute("RESET enable_mergejoin")
        fee_rows, inputs, input_sat, weighted = cur.execute(FEE_SQL).fetchone()
        mark("fees")
        cur.execute("DELETE FROM bench.btc_prevout_stage WHERE spend_height BETWEEN %s AND %s", (lo_height, hi_height))
        stage_deleted = cur.rowcount
        if keep_blocks > 0:
            cur.execute("DELETE FROM bench.btc_utxo_spent WHERE spend_height < %s", (hi_height - keep_blocks + 1,))
        mark("stage_delete_and_prune")
    conn.commit()
    mark("commit")
    wall = time.perf_counter() - wall0
    cpu_me = time.process_time() - cpu_me0
    cpu_db = server_cpu(CLUSTER[0]) - cpu_db0
    wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)::bigint", (lsn0,)).fetchone()[0]
    conn.commit()
    spends = len(b["spends"])
    if found != len(spent_rows) or inputs != spends or stage_deleted != spends:
        raise RuntimeError(
            f"{spends} spends, {found} + {len(in_batch)} found, {inputs} inputs, {stage_deleted} stage rows"
        )
    if input_sat != expected_inputs or int(weighted) != expected_weighted or fee_rows != len(tx_rows):
        raise RuntimeError("input totals differ from the generator's")
    tx = b["t1"] - b["t0"]
    return {
        "tx": tx,
        "created": b["o1"] - b["o0"],
        "created_in_table": len(new_rows),
        "spent": spends,
        "spent_in_table": len(spent_rows),
        "kinds": b["kinds"],
        "wall_sec": wall,
        "db_cpu_sec": cpu_db,
        "client_cpu_sec": cpu_me,
        "client_copy_cpu_sec": copy_me,
        "wal_bytes": wal,
        "plan": plan,
        "steps_db_cpu_sec": steps,
    }


CLUSTER: list[EmbeddedPostgres] = []  # the cluster being measured (server_cpu reads its processes)


def grow(conn: psycopg.Connection, key: str, work: Workload, target: int, chunk: int = 2_000_000) -> float:
    """Grow the live set to `target` outputs with set-based INSERTs through the index; wall seconds."""
    started = time.perf_counter()
    while work.live_count < target:
        lo, hi = work.grow(min(chunk, target - work.live_count))
        conn.execute(
            f"INSERT INTO bench.btc_utxo SELECT {KEYS[key]['sql']}, {SQL_COLUMNS}".replace("%", "%%")
            + " FROM generate_series(%s::bigint, %s::bigint) AS o",
            (lo, hi - 1),
        )
        conn.commit()
    return time.perf_counter() - started


def sizes(conn: psycopg.Connection) -> dict:
    row = conn.execute(
        "SELECT pg_table_size('bench.btc_utxo'), pg_indexes_size('bench.btc_utxo'),"
        " (SELECT count(*) FROM bench.btc_utxo)"
    ).fetchone()
    conn.commit()
    return {"table_bytes": row[0], "index_bytes": row[1], "live": row[2]}


def connect(server: EmbeddedPostgres, key: str) -> psycopg.Connection:
    conn = psycopg.connect(server.url)
    conn.execute(temp_ddl(key))
    conn.commit()
    return conn


def restart(server: EmbeddedPostgres, shared_buffers: str) -> None:
    server.stop()
    server.server_settings["shared_buffers"] = shared_buffers
    server.start()


def run_engine(kind: str, base: Path, args: argparse.Namespace) -> dict:
    settings = dict(COMMON_SETTINGS)
    if kind == "timescaledb":
        settings.update(TIMESCALEDB_SETTINGS)
    buffers = args.shared_buffers.split(",")
    settings["shared_buffers"] = buffers[0]
    server = EmbeddedPostgres(base / f"cluster-{kind}", free_port(), database="bench", server_settings=settings)
    server.start()
    CLUSTER[:] = [server]
    result: dict = {"engine": kind, "points": []}
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            if kind == "timescaledb":
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                result["version"] = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                ).fetchone()[0]
            else:
                result["version"] = conn.execute("SHOW server_version").fetchone()[0]
            conn.execute(candidate_ddl(args.key))
        client = args.in_batch == "client"
        mix = tuple(float(x) for x in args.age_mix.split(","))
        work = Workload(mix, args.recent_tx)
        for size in (int(s) for s in args.sizes.split(",")):
            conn = connect(server, args.key)
            cpu0 = server_cpu(server)
            grow_sec = grow(conn, args.key, work, size)
            grow_cpu = server_cpu(server) - cpu0
            conn.close()
            print(
                f"[{kind}] live set grown to {work.live_count:,} outputs in {grow_sec:.0f}s"
                f" ({grow_cpu:.0f} s of server CPU)"
            )
            for sb in buffers:
                restart(server, sb)
                conn = connect(server, args.key)
                for _ in range(args.warm_batches):
                    run_batch(conn, args.key, work, args.batch_tx, args.keep_spent_blocks, False, client)
                load0 = load_average()
                batches = [
                    run_batch(conn, args.key, work, args.batch_tx, args.keep_spent_blocks, i == 0, client)
                    for i in range(args.batches)
                ]
                load1 = load_average()
                cpu0 = server_cpu(server)
                vac0 = time.perf_counter()
                conn.autocommit = True
                dead = conn.execute(
                    "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'bench.btc_utxo'::regclass"
                ).fetchone()[0]
                conn.execute("VACUUM bench.btc_utxo")
                vacuum = {"sec": time.perf_counter() - vac0, "db_cpu_sec": server_cpu(server) - cpu0, "dead": dead}
                conn.autocommit = False
                size_now = sizes(conn)
                conn.close()
                point = {
                    "live_target": size,
                    "shared_buffers": sb,
                    "batches": batches,
                    "vacuum": vacuum,
                    "load_before": load0,
                    "load_after": load1,
                    **size_now,
                }
                result["points"].append(point)
                report_point(kind, point)
    finally:
        server.destroy()
    return result


def summarise(point: dict) -> dict:
    b = point["batches"]
    tx = sum(x["tx"] for x in b)
    created = sum(x["created"] for x in b)
    spent = sum(x["spent"] for x in b)
    db = sum(x["db_cpu_sec"] for x in b)
    return {
        "tx": tx,
        "db_us_per_tx": db / tx * 1e6,
        "db_us_per_op": db / (created + spent) * 1e6,
        "client_copy_us_per_tx": sum(x["client_copy_cpu_sec"] for x in b) / tx * 1e6,
        "wall_us_per_tx": sum(x["wall_sec"] for x in b) / tx * 1e6,
        "wal_bytes_per_tx": sum(x["wal_bytes"] for x in b) / tx,
        "vacuum_us_per_dead": point["vacuum"]["db_cpu_sec"] / max(1, point["vacuum"]["dead"]) * 1e6,
        "bytes_per_live": (point["table_bytes"] + point["index_bytes"]) / point["live"],
        "index_bytes_per_live": point["index_bytes"] / point["live"],
        "in_batch_share": sum(x["kinds"]["in_batch"] for x in b) / spent,
        "planner_scans_utxo": "Nested Loop" not in (b[0]["plan"] or ""),
        "steps_db_us_per_tx": {
            k: round(sum(x["steps_db_cpu_sec"][k] for x in b) / tx * 1e6, 1) for k in b[0]["steps_db_cpu_sec"]
        },
        "per_batch_db_us_per_tx": [round(x["db_cpu_sec"] / x["tx"] * 1e6, 1) for x in b],
    }


def report_point(kind: str, point: dict) -> None:
    s = summarise(point)
    point["summary"] = s
    print(
        f"[{kind}] live {point['live']:,} (table {point['table_bytes'] / 2**20:,.0f} MiB + index"
        f" {point['index_bytes'] / 2**20:,.0f} MiB = {s['bytes_per_live']:.1f} B per live output),"
        f" shared_buffers {point['shared_buffers']}: {s['tx']:,} tx in {len(point['batches'])} batches,"
        f" database CPU {s['db_us_per_tx']:.1f} us/tx (batches {s['per_batch_db_us_per_tx']}),"
        f" {s['db_us_per_op']:.2f} us per created + spent output, by step {s['steps_db_us_per_tx']};"
        f" COPY formatting (this process)"
        f" {s['client_copy_us_per_tx']:.1f} us/tx; wall {s['wall_us_per_tx']:.1f} us/tx;"
        f" WAL {s['wal_bytes_per_tx']:,.0f} B/tx; VACUUM {point['vacuum']['db_cpu_sec']:.1f} s CPU for"
        f" {point['vacuum']['dead']:,} dead rows = {s['vacuum_us_per_dead']:.2f} us per spent output;"
        f" in-batch spends {s['in_batch_share']:.0%}; the planner's own DELETE plan"
        f" {'scans the whole UTXO table' if s['planner_scans_utxo'] else 'probes its index'};"
        f" load average {point['load_before']} / {point['load_after']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="postgres,timescaledb")
    parser.add_argument("--sizes", default="1000000,5000000", help="live-set sizes (outputs) to measure at, growing")
    parser.add_argument("--shared-buffers", default="128MB,2GB", help="a server restart for each, at every size")
    parser.add_argument("--batch-tx", type=int, default=100_000, help="transactions per batch (the loader's maximum)")
    parser.add_argument("--batches", type=int, default=3, help="measured batches per size and setting")
    parser.add_argument("--warm-batches", type=int, default=1, help="unmeasured batches after each restart")
    parser.add_argument("--key", choices=sorted(KEYS), default="packed")
    parser.add_argument("--age-mix", default="0.25,0.45,0.30", help="shares of spends: same batch, recent, old")
    parser.add_argument("--recent-tx", type=int, default=1_000_000, help="'recent': the last this many tx")
    parser.add_argument("--keep-spent-blocks", type=int, default=0, help="keep the spent rows of the last N blocks")
    parser.add_argument(
        "--in-batch",
        choices=("table", "client"),
        default="table",
        help="spends of outputs created in the same batch: through the UTXO table, or resolved by the client",
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    print(machine_line())
    print(f"load average at start: {load_average()}")
    base = Path(tempfile.mkdtemp(prefix="mqnode-prevouts-"))
    os.chmod(base, 0o755)
    results: dict = {"machine": machine_line(), "args": vars(args) | {"json": str(args.json)}, "engines": []}
    try:
        for kind in args.engines.split(","):
            results["engines"].append(run_engine(kind, base, args))
            if args.json:
                args.json.write_text(json.dumps(results, indent=1, default=str))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
