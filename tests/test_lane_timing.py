"""Lane timing defined once: the chain listener is a Lane (the lanes' doubling backoff, not a constant retry
sleep), a sleeping lane keeps its heartbeat fresh at core.lane_heartbeat_interval(), and api.lane_status calls
a lane stale after core.lane_stale_after() (PostgreSQL server)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg

from app.btc.chain_sync import IngestOptions
from app.btc.listener import ChainListener
from app.btc.rpc import RpcError
from app.lanes import Lane
from tests.conftest import wait_until


class FlakyNode:
    """A node that is unreachable for its first `failures` calls, then has no block at all (tip -1)."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls: list[float] = []

    def get_block_count(self) -> int:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise RpcError("getblockcount", "node unreachable (connection refused)")
        return -1


def row(url: str, component: str, interval: str) -> tuple | None:
    with psycopg.connect(url) as conn:
        return conn.execute(
            'SELECT status, error_message FROM core.sync_checkpoints WHERE component = %s AND "interval" = %s',
            (component, interval),
        ).fetchone()


def test_the_chain_listener_retries_with_the_lanes_doubling_backoff(server_url):
    node = FlakyNode(failures=3)
    conn = psycopg.connect(server_url)
    listener = ChainListener(
        conn, node, IngestOptions(), poll_interval_sec=30, error_backoff_sec=0.3, max_backoff_sec=0.6
    )
    thread = threading.Thread(target=listener.run, daemon=True)
    try:
        thread.start()
        wait_until(lambda: len(node.calls) >= 2)
        # The failure is in the raw checkpoint and in the lane's heartbeat while it retries.
        assert row(server_url, "btc_raw_block_ingestion", "block")[0] == "error"
        assert "node unreachable" in row(server_url, "worker_chain", "heartbeat")[1]
        wait_until(lambda: len(node.calls) >= 4 and row(server_url, "worker_chain", "heartbeat") == ("ok", None))
        gaps = [b - a for a, b in zip(node.calls, node.calls[1:], strict=False)]
        # Waits of at least 0.3, 0.6 and (capped) 0.6 s between the failed passes: doubling, not constant.
        assert gaps[0] >= 0.3 and gaps[1] >= 0.6 and gaps[2] >= 0.6, gaps
        assert row(server_url, "btc_raw_block_ingestion", "block") == ("ok", None)
        assert len(node.calls) == 4  # healthy now: the next pass waits for the 30 s poll timer
    finally:
        listener.stop()
        thread.join(10)
        conn.close()
    assert not thread.is_alive()


def test_a_sleeping_lane_keeps_its_heartbeat_fresh(server_url):
    """A timer longer than the stale threshold is no stale lane: it beats while it sleeps."""
    with psycopg.connect(server_url) as conn:
        (every,) = conn.execute("SELECT extract(EPOCH FROM core.lane_heartbeat_interval())::float8").fetchone()
    steps = []
    lane = Lane("sleepy", server_url, lambda conn: steps.append(1) or False, interval_sec=10 * every)
    thread = threading.Thread(target=lane.run, daemon=True)
    thread.start()
    try:

        def beat_at():
            with psycopg.connect(server_url) as conn:
                found = conn.execute(
                    "SELECT updated_at FROM core.sync_checkpoints WHERE component = 'worker_sleepy'"
                ).fetchone()
            return found and found[0]

        first = wait_until(beat_at)
        later = wait_until(lambda: (t := beat_at()) and t > first and t, timeout=3 * every, interval=1)
        assert steps == [1]  # one step, then asleep: the second beat came from the sleep
        assert (later - first).total_seconds() >= every * 0.9
    finally:
        lane.stop()
        thread.join(5)
    assert not thread.is_alive()


def test_stale_is_older_than_core_lane_stale_after(server_url):
    with psycopg.connect(server_url) as conn:
        (stale_after,) = conn.execute("SELECT core.lane_stale_after()").fetchone()
        assert stale_after == 6 * conn.execute("SELECT core.lane_heartbeat_interval()").fetchone()[0]
        now = datetime.now(UTC)
        for lane, age in (("fresh_lane", stale_after * 0.5), ("old_lane", stale_after * 1.5)):
            conn.execute("SELECT core.lane_heartbeat(%s)", (lane,))
            conn.execute(
                "UPDATE core.sync_checkpoints SET updated_at = %s WHERE component = %s",
                (now - age, f"worker_{lane}"),
            )
        stale = dict(
            conn.execute("SELECT lane, stale FROM api.lane_status WHERE lane IN ('fresh_lane', 'old_lane')").fetchall()
        )
    assert stale == {"fresh_lane": False, "old_lane": True}
