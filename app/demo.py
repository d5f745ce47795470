"""`mqnode demo`: the whole node on the embedded default, every lane running, with URLs and SQL to try.

- database: MQNODE_DATABASE_URL, else a local PostgreSQL under .mqnode/ (started here, database
  `mqnode_demo`, created afresh each run because the demo chain is new each run);
- node: MQNODE_BTC_RPC_URL (or MQNODE_BTC_RPC_COOKIE_FILE) when set: a real Bitcoin Core; prices then come
  from the real venues as registered,
  else sim-node with a synthetic chain covering the last --days days and mining a live block every
  --mine-every seconds;
- prices (with sim-node): the recorded real Binance.US 1m BTCUSD series (21 days of March 2023) served by a
  local replay exchange in Binance's klines shape and replayed onto the demo's days; the registry's binance
  row points at it (mode local), the other venues are disabled (`mqnode prices seed --reset all` restores
  the defaults);
- then `mqnode run`'s supervisor: chain listener, price ingestion, composer, rollups, metrics and the API.
Stops on Ctrl-C (or after --duration seconds) and stops what it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from app.settings import PROJECT_DIR, Settings

DEMO_RPC_USER = "mqnode"
DEMO_RPC_PASSWORD = "mqnode-demo"
DEMO_DATABASE = "mqnode_demo"
# The synthetic chain starts at genesis: supply (and so market cap and NVT) is only known from height 0 on.
SYNTHETIC_START_HEIGHT = 0

SQL_EXAMPLES = """\
-- the newest blocks and their facts
SELECT height, block_hash, tx_count, total_fee_sat, issued_sat, cumulative_supply_sat
FROM btc_primitive_block ORDER BY height DESC LIMIT 5;

-- the continuous 10-minute backbone (empty buckets included) with the canonical price
SELECT bucket_start_utc, block_count, tx_count_10m, fees_sat_10m, supply_total_sat, close_price_usd, market_cap_usd
FROM btc_primitive_10m ORDER BY bucket_start_utc DESC LIMIT 12;

-- hourly rollup, and daily metrics
SELECT bucket_start_utc, block_count, tx_count, fees_sat, avg_feerate_sat_vb, close_price_usd
FROM api.btc_primitive_1h ORDER BY 1 DESC LIMIT 6;
SELECT m.bucket_start_utc, m.market_cap_usd, n.nvt_raw, r.miner_revenue_usd, f.median_fee_sat, h.hash_rate_ehs
FROM btc_market_cap_24h m JOIN btc_nvt_24h n USING (bucket_start_utc)
JOIN btc_miner_revenue_24h r USING (bucket_start_utc) JOIN btc_fee_metrics_24h f USING (bucket_start_utc)
JOIN btc_hash_rate_24h h USING (bucket_start_utc) ORDER BY 1;

-- venue rows against the canonical price
SELECT bucket_start_utc, venue, close_price_usd, quality_status FROM venue_price_10m ORDER BY 1 DESC LIMIT 6;
SELECT bucket_start_utc, source_count, source_names, close_price_usd FROM mq_btc_price_10m ORDER BY 1 DESC LIMIT 6;

-- every stage's progress, lanes' heartbeats, reorgs followed
SELECT component, "interval", last_height, last_bucket_time, status FROM sync_checkpoints ORDER BY 2, 1;
SELECT * FROM api.lane_status;
SELECT * FROM btc_reorg_events ORDER BY reorg_id DESC;
"""


def start_sim_node(port: int, days: float, mine_every: float, txs_per_block: int, workdir: Path) -> tuple:
    ready = workdir / "sim-node.port"
    start = datetime.now(UTC) - timedelta(days=days)
    cmd = [
        sys.executable, "-m", "app.simnode.server", "--port", str(port),
        "--rpc-user", DEMO_RPC_USER, "--rpc-password", DEMO_RPC_PASSWORD,
        "--synthetic", "--start-height", str(SYNTHETIC_START_HEIGHT), "--start-time", start.isoformat(),
        "--until", "now", "--txs-per-block", str(txs_per_block),
        "--mine-every", str(mine_every), "--ready-file", str(ready), "--quiet",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=PROJECT_DIR, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (ready.exists() and ready.read_text().strip()):
        if proc.poll() is not None:
            raise SystemExit(f"sim-node exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("sim-node did not start within 120 s")
        time.sleep(0.2)
    return proc, f"http://127.0.0.1:{int(ready.read_text().strip())}", start


def point_registry_at_replay(database_url: str, replay_url: str, history_start: datetime) -> None:
    """The demo's venue set-up: binance local against the replay exchange on Binance.US's BTCUSD market (quoted
    in USD, so no stablecoin rate is needed), the other markets disabled."""
    patch = {
        "mode": "local",
        "symbol": "BTCUSD",
        "api_base": replay_url,
        "historical_start_utc": history_start.isoformat(),
        "min_request_interval_sec": 0,
    }
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE core.mq_price_source_registry SET config_json = config_json || %s::jsonb, enabled = true,"
            " symbol = 'BTCUSD', quote_currency = 'USD', updated_at = now() WHERE source_name = 'binance'",
            (json.dumps(patch),),
        )
        conn.execute("UPDATE core.mq_price_source_registry SET enabled = false WHERE source_name <> 'binance'")


def fresh_demo_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')


def wait_until_ready(api: str, database_url: str, stop: threading.Event, timeout: float = 600) -> bool:
    """Until the API answers and the 10m metrics have caught up with the backbone (first pass done)."""
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            health = httpx.get(f"{api}/api/v1/btc/health", timeout=5).json()
            with psycopg.connect(database_url) as conn:
                (caught_up,) = conn.execute(
                    "SELECT coalesce(min(c.last_bucket_time) >= max(b.last_bucket_time) - INTERVAL '10 minutes', false)"
                    " FROM core.sync_checkpoints AS c, core.sync_checkpoints AS b"
                    " WHERE c.component LIKE core.checkpoint_pattern('metric') AND c.\"interval\" = '10m'"
                    " AND b.component = core.checkpoint_component('primitive_10m')"
                ).fetchone()
            if health.get("last_raw_height") is not None and caught_up:
                return True
        except (httpx.HTTPError, ValueError, psycopg.Error):
            pass
        stop.wait(2)
    return False


def run_demo(args: argparse.Namespace) -> int:
    from app.db import resolve_database_url
    from app.embedded_pg import EmbeddedPostgres
    from app.market.replay_exchange import ReplayExchange
    from app.migrations import upgrade_database
    from app.supervisor import DEFAULT_LANES, Supervisor

    settings = Settings.from_env()
    real_node = bool(os.environ.get("MQNODE_BTC_RPC_URL") or os.environ.get("MQNODE_BTC_RPC_COOKIE_FILE"))
    embedded = None
    if settings.database_url:
        database_url = resolve_database_url(settings)
    else:
        embedded = EmbeddedPostgres(settings.embedded_dir / "postgres", settings.embedded_port)
        embedded.start()
        if real_node:
            database_url = embedded.url
        else:
            fresh_demo_database(embedded.admin_url)
            database_url = embedded.url.rsplit("/", 1)[0] + "/" + DEMO_DATABASE
    print(f"database: {database_url}" + (" (embedded, stopped when the demo ends)" if embedded else ""), flush=True)
    upgrade_database(database_url)

    env = {
        "MQNODE_BTC_POLL_INTERVAL_SEC": os.environ.get("MQNODE_BTC_POLL_INTERVAL_SEC") or "2",
        "MQNODE_LANE_INTERVAL_SEC": os.environ.get("MQNODE_LANE_INTERVAL_SEC") or "10",
        "MQNODE_PRICE_POLL_INTERVAL_SEC": os.environ.get("MQNODE_PRICE_POLL_INTERVAL_SEC") or "20",
    }
    sim = replay = None
    if real_node:
        print(f"node: {settings.btc_rpc_url} (your node); prices from the venues as registered", flush=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="mqnode-demo-"))
        sim, rpc_url, chain_start = start_sim_node(args.port, args.days, args.mine_every, args.txs_per_block, workdir)
        env.update(
            MQNODE_BTC_RPC_URL=rpc_url,
            MQNODE_BTC_RPC_USER=DEMO_RPC_USER,
            MQNODE_BTC_RPC_PASSWORD=DEMO_RPC_PASSWORD,
            MQNODE_BTC_START_HEIGHT=str(SYNTHETIC_START_HEIGHT),
        )
        replay = ReplayExchange(anchor=datetime.now(UTC))
        point_registry_at_replay(database_url, replay.url, chain_start.replace(second=0, microsecond=0))
        print(
            f"node: sim-node at {rpc_url}: synthetic chain of the last {args.days:g} days, a live block every"
            f" {args.mine_every:g}s\nprices: recorded Binance.US BTCUSD minutes (March 2023) replayed by"
            f" {replay.url} onto those days, through the binance venue loader (other venues disabled)",
            flush=True,
        )

    supervisor = Supervisor(list(DEFAULT_LANES), database_url, settings, env=env, grace_sec=settings.run_grace_sec)
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()
        supervisor.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if args.duration:
        threading.Timer(args.duration, on_signal).start()
    api = f"http://{settings.api_host}:{settings.api_port}"

    def announce() -> None:
        if wait_until_ready(api, database_url, stop):
            print(
                f"\nMQNODE is up: every lane running (Ctrl-C stops).\n\nTry the API:\n"
                f"  curl {api}/api/v1/btc/health\n"
                f"  curl '{api}/api/v1/btc/primitive?interval=1h&limit=3'\n"
                f"  curl '{api}/api/v1/btc/price/canonical?interval=10m&order=desc&limit=3'\n"
                f"  curl '{api}/api/v1/btc/metrics/nvt_raw?interval=24h'\n"
                f"  curl '{api}/api/v1/btc/metrics/fee_metrics?interval=1h&format=csv&limit=5'\n"
                f"  OpenAPI: {api}/schema\n\nTry SQL:\n  psql '{database_url}'\n\n{SQL_EXAMPLES}",
                flush=True,
            )
        elif not stop.is_set():
            print("demo: the lanes have not caught up within 10 minutes; see the lane output above", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    try:
        code = supervisor.run()
    finally:
        stop.set()
        if replay is not None:
            replay.stop()
        if sim is not None:
            sim.terminate()
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
        if embedded is not None:
            embedded.stop()
    print("demo stopped", flush=True)
    return code
