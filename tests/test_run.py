"""`mqnode run` end to end on PostgreSQL: sim-node (a fixed synthetic chain of the last hours), a fake
exchange for four venues, every lane under the supervisor, the API on loopback.

Shown: blocks, the 10m backbone, venue rows, the canonical price, rollups and metrics follow; the health
route reports every lane alive with lag figures; a lane killed with SIGKILL is restarted and the kill is
visible in its heartbeat; SIGTERM stops every lane cleanly; a second run resumes and the rows of closed
buckets are identical to those of the first.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from tests.conftest import free_port, wait_until
from tests.fake_exchange import FakeExchange
from tests.mqnode_run import MqnodeRun
from tests.simnode_proc import SimNodeProcess

LANES = ("chain", "price_ingest", "price_composer", "rollups", "metrics", "api")
LOCAL_VENUES = ("bitstamp", "coinbase", "okx", "bitfinex")
COMPARED = (
    "raw.btc_blocks_raw",
    "core.btc_primitive_block",
    "core.btc_primitive_10m",
    "core.mq_btc_price_10m",
    "core.bitstamp_price_10m",
    "core.btc_primitive_1h",
    "core.btc_market_cap_10m",
    "core.btc_fee_metrics_10m",
    "core.btc_nvt_1h",
)


def configure_venues(url: str, exchange: FakeExchange, start: datetime) -> None:
    patch = {"api_base": exchange.url, "historical_start_utc": start.isoformat(), "min_request_interval_sec": 0}
    with psycopg.connect(url) as conn:
        conn.execute("SELECT core.seed_price_source_registry()")
        conn.execute(
            "UPDATE core.mq_price_source_registry SET config_json = config_json || %s::jsonb"
            " WHERE source_name = ANY(%s)",
            (json.dumps(patch), list(LOCAL_VENUES)),
        )
        conn.execute("UPDATE core.mq_price_source_registry SET enabled = false WHERE source_name = 'bybit'")


def snapshot(url: str, before: datetime) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        out = {}
        for table in COMPARED:
            key = "height" if table in ("raw.btc_blocks_raw", "core.btc_primitive_block") else "bucket_start_utc"
            # Only periods that had ended: an hour that holds `before` is still forming (more 10m rows come).
            width = "1 hour" if table.endswith("_1h") else "1 day" if table.endswith("_24h") else "10 minutes"
            where = "" if key == "height" else f"WHERE bucket_start_utc + INTERVAL '{width}' <= %(before)s"
            out[table] = conn.execute(f"SELECT * FROM {table} {where} ORDER BY {key}", {"before": before}).fetchall()
        return out


def caught_up(url: str) -> bool:
    """Every stage has reached the newest block's bucket."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT"
            " (SELECT last_bucket_time FROM core.sync_checkpoints WHERE component = 'btc_primitive_10m_builder'),"
            " (SELECT last_bucket_time FROM core.sync_checkpoints WHERE component = 'btc_price_canonical_composer'),"
            " (SELECT min(last_bucket_time) FROM core.sync_checkpoints WHERE component LIKE 'btc\\_metric\\_%%\\_10m'),"
            " (SELECT count(*) FROM core.sync_checkpoints WHERE component LIKE 'btc\\_metric\\_%%' AND status = 'ok'),"
            " (SELECT count(*) FROM core.bitstamp_price_10m)"
        ).fetchone()
    builder, composer, metrics, metrics_ok, venue_rows = row
    return bool(builder and composer == builder and metrics == builder and metrics_ok == 26 and venue_rows)


@pytest.mark.slow
def test_run_supervises_every_lane_end_to_end(server_url):
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=4)
    api_port = free_port()
    exchange = FakeExchange()
    configure_venues(server_url, exchange, start)
    node = SimNodeProcess(
        "--synthetic", "--start-time", start.isoformat(), "--until", "now", "--txs-per-block", "30"
    ).start()
    env = {
        **node.env(),
        "MQNODE_DATABASE_URL": server_url,
        "MQNODE_BTC_START_HEIGHT": "840000",
        "MQNODE_API_HOST": "127.0.0.1",
        "MQNODE_API_PORT": str(api_port),
        "MQNODE_BTC_POLL_INTERVAL_SEC": "1",
        "MQNODE_LANE_INTERVAL_SEC": "2",
        "MQNODE_PRICE_POLL_INTERVAL_SEC": "3",
        "MQNODE_RUN_GRACE_SEC": "30",
    }
    api = f"http://127.0.0.1:{api_port}"
    run = MqnodeRun({**os.environ, **env})
    try:
        wait_until(lambda: caught_up(server_url), timeout=180, interval=1)

        def all_lanes_alive():
            try:
                health = httpx.get(f"{api}/api/v1/btc/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return None
            lanes = {lane["lane"]: lane for lane in health.get("lanes", [])}
            if set(LANES) <= set(lanes) and all(lanes[n]["status"] == "ok" for n in LANES):
                return health
            return None

        seen: list[dict] = []

        def healthy():
            # A moving state (a block mined, a new 10m bucket opening) is waited for, never read at one instant.
            health = all_lanes_alive()
            if health is None:
                return None
            seen[:] = [health]
            caught = (
                isinstance(health["node_tip"], int)
                and health["node_tip"] == health["last_raw_height"]
                and health["raw_lag_blocks"] == 0
                and health["primitive_backlog_blocks"] == 0
                and health["price_backlog_buckets"] == 0
            )
            return health if caught else None

        try:
            health = wait_until(healthy, timeout=120, interval=1)
        except AssertionError as exc:
            raise AssertionError(f"never caught up: last health {seen}") from exc
        assert health["stale_lanes"] == [] and health["checkpoints_in_error"] == []
        assert health["status"] == "ok"

        # SIGKILL the metrics lane: the supervisor records it and starts it again, and it keeps working.
        victim = run.lane_pid("metrics run")
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: run.lane_pid("metrics run") not in (None, victim), timeout=30)
        assert "lane metrics: lane exited with code -9" in run.output()
        with psycopg.connect(server_url) as conn:
            conn.execute("DELETE FROM core.sync_checkpoints WHERE component LIKE 'btc\\_metric\\_%\\_24h'")
        wait_until(lambda: caught_up(server_url), timeout=60, interval=1)

        assert run.terminate() == 0
        assert "all lanes stopped" in run.output() and "did not stop" not in run.output()
        closed = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)
        first = snapshot(server_url, closed)
        assert all(first[t] for t in COMPARED), [t for t in COMPARED if not first[t]]

        # A second run resumes from the checkpoints; rows of closed buckets come out identical.
        run = MqnodeRun({**os.environ, **env})
        wait_until(lambda: caught_up(server_url), timeout=120, interval=1)
        wait_until(all_lanes_alive, timeout=60, interval=1)
        assert run.terminate() == 0
        assert snapshot(server_url, closed) == first
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
        node.stop()
        exchange.stop()
