"""The chain at scale: a month of synthetic modern blocks through `mqnode btc backfill` into each engine.

sim-node serves `--days` x 144 synthetic blocks of about `--tx-per-block` transactions (default 30 days x
3,000: 4,320 blocks, ~13 M transactions; block intervals exponential with mean 600 s, so 0, 1, 2, 3...
blocks per 10m bucket as on mainnet; feerates lognormal around 10 sat/vB, 75% segwit). A warm-up pass
fetches every block once (sim-node renders it into its --render-cache files: its own render rate is
printed, and the loader runs are then served at file speed, not at sim-node's Python speed). Then for each
engine (plain PostgreSQL, and the real TimescaleDB server with its policies and compression), in a new
throwaway cluster (track_functions = all):
- `mqnode db upgrade` and `mqnode btc backfill --mode full --start-height H --until T` through the
  console script, as documented: wall time, tx/s end to end, and the loader's own stage seconds (the
  progress line of the command: rpc_fetch, json_decode, map, write_batch) plus the database's function
  times (pg_stat_user_functions: core.finish_block_batch = the per-block SQL, core.build_primitive_10m =
  the 10m build); COPY = write_batch - the batch functions;
- disk bytes per transaction of each table (table + indexes + TOAST; on TimescaleDB hypertable_size after
  compressing every chunk of the height-partitioned tables, the state the compression policy leaves
  settled chunks in);
- full rebuilds: core.build_primitive_block over all blocks, the 10m backbone from nothing
  (chain_sync.build_timeline), and, after one venue's synthetic prices are composed, the 1h/24h rollups
  and all metrics from nothing (app.rollups, app.metrics as their lanes run them).
`--json FILE` writes every figure for the projection (docs/benchmarks.md).
Usage: python -m bench.scale [--days 30] [--tx-per-block 3000] [--engines timescaledb,postgres] [--render-cache DIR]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from app.btc.chain_sync import build_timeline
from app.embedded_pg import EmbeddedPostgres
from app.metrics import run_metrics
from app.rollups import refresh_rollups
from bench.common import machine_line
from bench.derive import VENUE_ROWS
from tests.simnode_proc import RPC_PASSWORD, RPC_USER, SimNodeProcess

ROOT = Path(__file__).resolve().parent.parent
MQNODE = str(Path(sys.executable).with_name("mqnode"))
START_HEIGHT = 840_000
TIMESCALEDB_SETTINGS = {  # as the test harness runs the real server (tests/conftest.py)
    "shared_preload_libraries": "timescaledb",
    "max_worker_processes": "64",
    "timescaledb.max_background_workers": "48",
    "timescaledb.telemetry_level": "off",
}
COMMON_SETTINGS = {"shared_buffers": "256MB", "track_functions": "all", "max_wal_size": "4GB"}
TABLES = (
    "raw.btc_tx_raw",
    "raw.btc_blocks_raw",
    "core.btc_primitive_block",
    "core.btc_block_fee_facts",
    "core.btc_primitive_10m",
)
FUNCTIONS = (
    "begin_block_batch",
    "finish_block_batch",
    "build_primitive_block",
    "build_block_fee_facts",
    "build_block_utxo_facts",
    "build_primitive_10m",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) of a process, with its reaped children's when asked (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + (cutime + cstime if children else 0)) / TICK


def server_cpu(server: EmbeddedPostgres) -> float:
    """CPU seconds of a PostgreSQL cluster: the postmaster with its exited backends, plus its live processes.

    CPU seconds, unlike wall time, do not grow with the machine's load (other engineers' test suites)."""
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    total = process_cpu(postmaster, children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == postmaster:
            with contextlib.suppress(OSError):
                total += process_cpu(int(stat.parent.name))
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Rpc:
    """A bare keep-alive JSON-RPC connection (the warm-up pass: nothing of the loader's)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.auth = "Basic " + base64.b64encode(f"{RPC_USER}:{RPC_PASSWORD}".encode()).decode()

    def raw(self, method: str, *params: object) -> bytes:
        body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)})
        self.conn.request("POST", "/", body, {"Authorization": self.auth, "Content-Type": "application/json"})
        return self.conn.getresponse().read()

    def call(self, method: str, *params: object) -> object:
        return json.loads(self.raw(method, *params))["result"]


def warm_up(ports: list[int], first: int, last: int) -> dict:
    """Fetch every block once at verbosity 3, as the loader reads them (sim-node reports Core 29 and gives
    prevouts; it renders each block to its cache files); with several sim-node processes on the same chain
    and cache directory, each renders every n-th block."""

    def fetch(k: int) -> int:
        rpc = Rpc(ports[k])
        return sum(
            len(rpc.raw("getblock", rpc.call("getblockhash", h), 3)) for h in range(first + k, last + 1, len(ports))
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(len(ports)) as pool:
        total = sum(pool.map(fetch, range(len(ports))))
    seconds = time.perf_counter() - started
    rpc = Rpc(ports[0])
    tip = rpc.call("getblockheader", rpc.call("getblockhash", last))
    return {"json_bytes": total, "seconds": seconds, "tip_mediantime": tip["mediantime"], "processes": len(ports)}


def start_cluster(kind: str, base: Path) -> EmbeddedPostgres:
    settings = dict(COMMON_SETTINGS)
    if kind == "timescaledb":
        settings.update(TIMESCALEDB_SETTINGS)
    server = EmbeddedPostgres(base / f"cluster-{kind}", free_port(), database="bench", server_settings=settings)
    server.start()
    return server


def mqnode(env: dict[str, str], *args: str, timeout: float = 6 * 3600) -> tuple[float, str]:
    """The console script as a user runs it; (wall seconds, stderr). Fails on a non-zero exit."""
    started = time.perf_counter()
    done = subprocess.run([MQNODE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"mqnode {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return seconds, done.stderr


STAGE = re.compile(r"([a-z_0-9]+) ([0-9,.]+)s")


def parse_progress(stderr: str) -> dict:
    """The backfill's final progress lines: its elapsed time, stage seconds and the 10m build's."""
    out: dict = {"stages": {}}
    for line in stderr.splitlines():
        if line.startswith("backfill stages"):
            for name, seconds in STAGE.findall(line.split(":", 1)[1]):
                out["stages"][name] = float(seconds.replace(",", ""))
        elif line.startswith("backfill:"):
            out["ingest_elapsed"] = float(line.rsplit("elapsed ", 1)[1].rstrip("s").replace(",", ""))
        elif line.startswith("10m timeline:"):
            out["timeline_elapsed"] = float(line.rsplit("elapsed ", 1)[1].rstrip("s").replace(",", ""))
    return out


def function_times(conn: psycopg.Connection) -> dict:
    rows = conn.execute(
        "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions"
        " WHERE schemaname = 'core' AND funcname = ANY(%s)",
        (list(FUNCTIONS),),
    ).fetchall()
    conn.commit()
    return {
        name: {"calls": calls, "total_sec": total / 1000, "self_sec": own / 1000} for name, calls, total, own in rows
    }


def table_sizes(conn: psycopg.Connection, kind: str) -> dict:
    sizes = {}
    for table in TABLES:
        schema, name = table.split(".")
        hypertable = (
            kind == "timescaledb"
            and conn.execute(
                "SELECT 1 FROM timescaledb_information.hypertables"
                " WHERE hypertable_schema = %s AND hypertable_name = %s",
                (schema, name),
            ).fetchone()
        )
        function = "hypertable_size" if hypertable else "pg_total_relation_size"
        (size,) = conn.execute(f"SELECT {function}(%s::regclass)", (table,)).fetchone()
        sizes[table] = int(size)
    (sizes["database"],) = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    conn.commit()
    return sizes


def compress_height_tables(conn: psycopg.Connection) -> dict:
    """Compress every chunk of the height-partitioned hypertables (the policy's settled state); seconds each."""
    seconds = {}
    for table in ("raw.btc_tx_raw", "raw.btc_blocks_raw", "core.btc_primitive_block", "core.btc_block_fee_facts"):
        started = time.perf_counter()
        chunks = [r[0] for r in conn.execute("SELECT show_chunks(%s::regclass)::text", (table,)).fetchall()]
        conn.commit()
        for chunk in chunks:
            conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,))
            conn.commit()
        seconds[table] = time.perf_counter() - started
    conn.execute("ANALYZE")
    conn.commit()
    return seconds


def chain_facts(conn: psycopg.Connection) -> dict:
    row = conn.execute(
        """
        SELECT count(*), sum(tx_count), avg(size)::bigint, avg(weight)::bigint, max(weight)
        FROM raw.btc_blocks_raw
        """
    ).fetchone()
    spread = dict(
        conn.execute(
            "SELECT least(block_count, 4), count(*) FROM core.btc_primitive_10m"
            " WHERE bucket_start_utc <= (SELECT max(bucket_start_utc) FROM core.btc_primitive_block)"
            " GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    (segwit, median_feerate, tx_size) = conn.execute(
        "SELECT avg(is_segwit::int)::float8,"
        " percentile_disc(0.5) WITHIN GROUP (ORDER BY fee_sat::float8 / vsize),"
        " avg(size)::float8 FROM raw.btc_tx_raw WHERE NOT is_coinbase"
    ).fetchone()
    conn.commit()
    return {
        "blocks": row[0],
        "tx": int(row[1]),
        "avg_block_size": row[2],
        "avg_block_weight": row[3],
        "max_block_weight": row[4],
        "buckets_by_block_count": {str(k): v for k, v in spread.items()},
        "segwit_share": segwit,
        "median_feerate_sat_vb": median_feerate,
        "avg_tx_size": tx_size,
    }


def rebuilds(url: str, first: int, last: int, until: datetime) -> dict:
    out = {}
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("SELECT core.build_primitive_block(%s, %s)", (first, last))
        out["primitive_block_sec"] = time.perf_counter() - started
        with conn.transaction():
            conn.execute("TRUNCATE core.btc_primitive_10m")
            conn.execute(
                "DELETE FROM core.sync_checkpoints WHERE component = 'btc_primitive_10m_builder'"
                " AND \"interval\" = '10m'"
            )
        started = time.perf_counter()
        first_bucket, last_bucket = build_timeline(conn, until)
        out["backbone_sec"] = time.perf_counter() - started
        (out["backbone_buckets"],) = conn.execute("SELECT count(*) FROM core.btc_primitive_10m").fetchone()
        with conn.transaction():
            conn.execute(VENUE_ROWS)
            conn.execute("SELECT * FROM core.compose_btc_price_10m()")
        conn.execute("ANALYZE")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as auto:
        started = time.perf_counter()
        refresh_rollups(auto)
        out["rollups_sec"] = time.perf_counter() - started
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        steps = []
        for interval in ("10m", "1h", "24h"):
            steps += run_metrics(conn, interval=interval)
        out["metrics_sec"] = time.perf_counter() - started
        out["metric_rows"] = sum(s.row_count for s in steps)
        failed = [(s.metric_name, s.status, s.message) for s in steps if s.status != "ok"]
        if failed:
            raise RuntimeError(f"metrics failed: {failed}")
    return out


def run_engine(kind: str, node: SimNodeProcess, base: Path, first: int, last: int, until: datetime) -> dict:
    server = start_cluster(kind, base)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MQNODE_")}
        env.update(node.env(), MQNODE_DATABASE_URL=server.url, MQNODE_LOG_LEVEL="WARNING")
        if kind == "timescaledb":
            env["MQNODE_REQUIRE_TIMESCALEDB"] = "true"
        mqnode(env, "db", "upgrade")
        result: dict = {"engine": kind, "load_before": load_average()}
        loader_cpu, db_cpu, node_cpu = children_cpu(), server_cpu(server), process_cpu(node.proc.pid)
        wall, stderr = mqnode(
            env, "btc", "backfill", "--mode", "full", "--start-height", str(first), "--until", until.isoformat()
        )
        result.update(
            backfill_wall_sec=wall,
            load_after=load_average(),
            loader_cpu_sec=children_cpu() - loader_cpu,
            database_cpu_sec=server_cpu(server) - db_cpu,
            simnode_cpu_sec=process_cpu(node.proc.pid) - node_cpu,
            **parse_progress(stderr),
        )
        with psycopg.connect(server.url) as conn:
            result["functions"] = function_times(conn)
            result["chain"] = chain_facts(conn)
            result["sizes_uncompressed"] = table_sizes(conn, kind)
            if kind == "timescaledb":
                result["compress_sec"] = compress_height_tables(conn)
                result["sizes_compressed"] = table_sizes(conn, kind)
        result["rebuild"] = rebuilds(server.url, first, last, until)
        result["load_end"] = load_average()
        return result
    finally:
        server.destroy()


def report(r: dict) -> None:
    tx = r["chain"]["tx"]
    blocks = r["chain"]["blocks"]
    f = r["functions"]
    stages = dict(r["stages"])
    batch_sql = f.get("finish_block_batch", {}).get("total_sec", 0) + f.get("begin_block_batch", {}).get("total_sec", 0)
    print(f"== {r['engine']} (load average {r['load_before']} before, {r['load_after']} after the backfill)")
    print(
        f"backfill end to end: {blocks:,} blocks, {tx:,} tx in {r['backfill_wall_sec']:.1f}s ="
        f" {tx / r['backfill_wall_sec']:,.0f} tx/s (ingest {r.get('ingest_elapsed', 0):.1f}s ="
        f" {tx / max(r.get('ingest_elapsed', 1), 1e-9):,.0f} tx/s, 10m timeline {r.get('timeline_elapsed', 0):.1f}s)"
    )
    print(
        f"CPU seconds of the backfill: loader process {r['loader_cpu_sec']:.1f}s ({r['loader_cpu_sec'] / tx * 1e6:.1f}"
        f" us/tx), database server {r['database_cpu_sec']:.1f}s ({r['database_cpu_sec'] / tx * 1e6:.1f} us/tx),"
        f" sim-node serving files {r['simnode_cpu_sec']:.1f}s"
    )
    print("stage seconds (wall per thread, summed over threads; inflated by the load):")
    rows = [(name, seconds) for name, seconds in stages.items()]
    rows.append(("  of which batch SQL (begin+finish_block_batch)", batch_sql))
    rows.append(("  of which COPY and the rest", stages.get("write_batch", 0) - batch_sql))
    for name in ("build_primitive_block", "build_block_fee_facts", "build_block_utxo_facts"):
        if name in f:
            rows.append((f"    in finish: core.{name}", f[name]["total_sec"]))
    if "build_primitive_10m" in f:
        rows.append(("10m build (core.build_primitive_10m)", f["build_primitive_10m"]["total_sec"]))
    for name, seconds in rows:
        print(f"  {name:52s} {seconds:9.1f}s  {tx / seconds if seconds > 0 else 0:12,.0f} tx/s")
    for label in ("sizes_uncompressed", "sizes_compressed"):
        if label in r:
            sizes = r[label]
            parts = [f"{t} {sizes[t] / tx:,.1f}" for t in TABLES if t.startswith("raw.btc_tx")]
            parts += [f"{t} {sizes[t] / blocks:,.0f} per block" for t in TABLES[1:4]]
            parts.append(f"core.btc_primitive_10m {sizes['core.btc_primitive_10m']:,} B")
            parts.append(f"database {sizes['database'] / tx:,.1f} per tx")
            print(f"  bytes ({label}): " + "; ".join(parts))
    if "compress_sec" in r:
        print("  compression: " + ", ".join(f"{t} {s:.1f}s" for t, s in r["compress_sec"].items()))
    rb = r["rebuild"]
    print(
        f"  full rebuilds: btc_primitive_block {rb['primitive_block_sec']:.1f}s ({tx / rb['primitive_block_sec']:,.0f}"
        f" tx/s); backbone {rb['backbone_buckets']:,} buckets {rb['backbone_sec']:.2f}s; rollups"
        f" {rb['rollups_sec']:.2f}s; metrics (10m, 1h, 24h) {rb['metric_rows']:,} rows {rb['metrics_sec']:.1f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--tx-per-block", type=int, default=3000)
    parser.add_argument("--engines", default="timescaledb,postgres")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--render-processes", type=int, default=2, help="sim-node processes rendering the warm-up (then one serves)"
    )
    parser.add_argument(
        "--render-cache",
        type=Path,
        help="sim-node's rendered blocks in DIR, kept after the run (a later run with the same --days and"
        " --tx-per-block serves them instead of rendering again); default: a temporary directory",
    )
    args = parser.parse_args()
    blocks = int(args.days * 144)
    first, last = START_HEIGHT, START_HEIGHT + blocks - 1
    print(machine_line())
    print(f"load average at start: {load_average()}")
    base = Path(tempfile.mkdtemp(prefix="mqnode-scale-"))
    os.chmod(base, 0o755)
    results: dict = {"machine": machine_line(), "days": args.days, "tx_per_block": args.tx_per_block, "engines": []}
    try:
        started = time.perf_counter()
        sim_args = ("--synthetic", "--start-height", str(first), "--count", str(blocks))
        render = args.render_cache or base / "render"
        sim_args += ("--txs-per-block", str(args.tx_per_block), "--render-cache", str(render))
        nodes = [SimNodeProcess(*sim_args) for _ in range(max(1, args.render_processes))]
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda n: n.start(timeout=6 * 3600), nodes))
        node = nodes[0]
        try:
            results["simnode_start_sec"] = time.perf_counter() - started
            print(
                f"sim-node: {blocks:,} blocks generated in {results['simnode_start_sec']:.0f}s ({len(nodes)} processes)"
            )
            warm = warm_up([n.port for n in nodes], first, last)
            for extra in nodes[1:]:
                extra.stop()
            results["warm_up"] = warm
            print(
                f"warm-up: {len(nodes)} sim-node processes rendered {warm['json_bytes'] / 1e6:,.0f} MB of getblock v3"
                f" JSON in {warm['seconds']:.0f}s = {warm['json_bytes'] / 1e6 / warm['seconds']:.1f} MB/s,"
                f" {blocks / warm['seconds']:.2f} blocks/s (load average {load_average()})"
            )
            until = datetime.fromtimestamp(warm["tip_mediantime"] // 600 * 600 + 600, UTC)
            for kind in args.engines.split(","):
                result = run_engine(kind, node, base, first, last, until)
                result["json_bytes"] = warm["json_bytes"]
                results["engines"].append(result)
                report(result)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1, default=str))
        finally:
            for n in nodes:
                n.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
