"""`mqnode demo`: the whole chain lane on the embedded default, with SQL to try.

- database: MQNODE_DATABASE_URL, else a local PostgreSQL under .mqnode/ (started here);
- node: MQNODE_BTC_RPC_URL when set (a real Bitcoin Core), else sim-node replaying the real early
  mainnet chain (heights 0-438) and then mining a synthetic block every --mine-every seconds;
- schema upgraded, then the chain listener follows the node until Ctrl-C (or --duration).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from app.settings import PROJECT_DIR, Settings

log = logging.getLogger(__name__)

EARLY_CHAIN = PROJECT_DIR / "tests" / "fixtures" / "bitcoinj-raw-blocks" / "blk_mainnet_0_to_438.dat"
DEMO_RPC_USER = "mqnode"
DEMO_RPC_PASSWORD = "mqnode-demo"

SQL_EXAMPLES = """\
-- the newest blocks and their facts
SELECT height, block_hash, tx_count, total_fee_sat, issued_sat, cumulative_supply_sat
FROM btc_primitive_block ORDER BY height DESC LIMIT 5;

-- the continuous 10-minute backbone (empty buckets included)
SELECT bucket_start_utc, block_count, tx_count_10m, issued_sat_10m, supply_total_sat, best_block_height_last
FROM btc_primitive_10m ORDER BY bucket_start_utc DESC LIMIT 12;

-- daily block count, transactions (excluding coinbase) and supply, like Coin Metrics' BlkCnt/TxCnt/SplyCur
SELECT date_trunc('day', bucket_start_utc) AS day, sum(block_count) AS blocks,
       sum(non_coinbase_tx_count_10m) AS tx, max(supply_total_sat) / 1e8 AS supply_btc
FROM btc_primitive_10m WHERE bucket_start_utc < '2009-01-13' GROUP BY 1 ORDER BY 1;

-- progress of every stage, and reorgs followed
SELECT * FROM sync_checkpoints;
SELECT * FROM btc_reorg_events ORDER BY reorg_id DESC;
"""


def start_sim_node(port: int, mine_every: float, workdir: Path) -> tuple[subprocess.Popen, str]:
    ready = workdir / "sim-node.port"
    cmd = [
        sys.executable,
        "-m",
        "app.simnode.server",
        "--port",
        str(port),
        "--rpc-user",
        DEMO_RPC_USER,
        "--rpc-password",
        DEMO_RPC_PASSWORD,
        "--raw-blocks",
        str(EARLY_CHAIN),
        "--mine-every",
        str(mine_every),
        "--ready-file",
        str(ready),
    ]
    proc = subprocess.Popen(cmd, cwd=PROJECT_DIR)
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text().strip()):
        if proc.poll() is not None:
            raise SystemExit(f"sim-node exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("sim-node did not start within 60 s")
        time.sleep(0.1)
    bound = int(ready.read_text().strip())
    return proc, f"http://127.0.0.1:{bound}"


def run_demo(args: argparse.Namespace) -> int:
    from app.btc.chain_sync import IngestOptions
    from app.btc.listener import ChainListener
    from app.btc.rpc import BitcoinRpc, RpcConfig
    from app.db import connect, resolve_database_url
    from app.embedded_pg import EmbeddedPostgres
    from app.migrations import upgrade_database

    settings = Settings.from_env()
    embedded = None
    if settings.database_url:
        database_url = resolve_database_url(settings)
    else:
        embedded = EmbeddedPostgres(settings.embedded_dir / "postgres", settings.embedded_port)
        embedded.start()
        database_url = embedded.url
    print(f"database: {database_url}" + (" (embedded, stopped when the demo ends)" if embedded else ""), flush=True)
    upgrade_database(database_url)

    sim = None
    workdir = Path(tempfile.mkdtemp(prefix="mqnode-demo-"))
    if os.environ.get("MQNODE_BTC_RPC_URL"):
        rpc_config = RpcConfig.from_settings(settings)
        print(f"node: {settings.btc_rpc_url} (from MQNODE_BTC_RPC_URL)", flush=True)
    else:
        sim, url = start_sim_node(args.port, args.mine_every, workdir)
        rpc_config = RpcConfig(url=url, user=DEMO_RPC_USER, password=DEMO_RPC_PASSWORD)
        print(f"node: sim-node at {url} replaying mainnet 0-438, mining every {args.mine_every:g}s", flush=True)

    conn = connect(database_url)
    listener = ChainListener(
        conn,
        BitcoinRpc(rpc_config),
        IngestOptions.from_settings(settings),
        poll_interval_sec=min(settings.btc_poll_interval_sec, 2.0),
        write_method=settings.db_write_method,
    )
    stopper = threading.Event()

    def stop(*_: object) -> None:
        stopper.set()
        listener.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if args.duration:
        threading.Timer(args.duration, stop).start()
    try:
        listener.sync_once()
        raw = conn.execute(
            "SELECT last_height FROM core.sync_checkpoints WHERE component = 'btc_raw_block_ingestion'"
        ).fetchone()
        conn.commit()
        print(f"\ninitial sync done: raw checkpoint height {raw[0] if raw else None}", flush=True)
        print(f"\nTry it (while this runs):\n  psql '{database_url}'\n\n{SQL_EXAMPLES}", flush=True)
        print("Following the node; Ctrl-C stops.", flush=True)
        listener.run()
    finally:
        conn.close()
        if sim is not None:
            sim.terminate()
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
        if embedded is not None:
            embedded.stop()
        logging.getLogger(__name__).info("demo stopped")
    return 0
