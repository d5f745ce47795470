"""The lane loop every long-running command shares: NOTIFY and timer wake-ups, heartbeats, failing steps,
and a prompt stop between steps (PostgreSQL: a lane holds a work and a LISTEN connection)."""

from __future__ import annotations

import threading
import time

import psycopg

from app.lanes import Lane
from tests.conftest import wait_until


def heartbeat_row(url: str, lane: str) -> tuple | None:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT status, error_message FROM core.sync_checkpoints"
            " WHERE component = %s AND \"interval\" = 'heartbeat'",
            (f"worker_{lane}",),
        ).fetchone()


def test_lane_wakes_on_notify_and_timer_and_stops_promptly(server_url):
    steps: list[float] = []

    def step(conn: psycopg.Connection) -> bool:
        conn.execute("SELECT 1")
        conn.commit()
        steps.append(time.monotonic())
        return False

    lane = Lane("unit", server_url, step, channels=("primitive_ready",), interval_sec=3.0)
    thread = threading.Thread(target=lane.run, daemon=True)
    thread.start()
    wait_until(lambda: len(steps) == 1)
    assert heartbeat_row(server_url, "unit") == ("ok", None)
    time.sleep(0.5)
    with psycopg.connect(server_url, autocommit=True) as conn:  # two events at once: one step covers both
        conn.execute("SELECT pg_notify('primitive_ready', 'a'), pg_notify('primitive_ready', 'b')")
    wait_until(lambda: len(steps) == 2, timeout=2.5)  # well before the 3 s timer
    assert steps[1] - steps[0] < 2.5
    wait_until(lambda: len(steps) == 3, timeout=5)  # nothing happens: the timer wakes it
    assert steps[2] - steps[1] >= 2.5
    stopped_at = time.monotonic()
    lane.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - stopped_at < 2.0


def test_a_failing_step_is_recorded_and_retried(server_url):
    calls = []

    def step(conn: psycopg.Connection) -> bool:
        calls.append(1)
        if len(calls) == 1:
            conn.execute("SELECT * FROM no_such_table")
        return False

    lane = Lane("flaky", server_url, step, interval_sec=0.2, error_backoff_sec=0.2)
    thread = threading.Thread(target=lane.run, daemon=True)
    thread.start()
    wait_until(lambda: len(calls) >= 1)
    seen: list[tuple] = []  # the error row as read, not re-read: the retry may already have cleared it

    def error_recorded() -> bool:
        row = heartbeat_row(server_url, "flaky")
        if row and row[0] == "error":
            seen.append(row)
        return bool(seen)

    wait_until(error_recorded)
    assert "no_such_table" in seen[0][1]
    wait_until(lambda: len(calls) >= 2 and heartbeat_row(server_url, "flaky") == ("ok", None))
    lane.stop()
    thread.join(5)
    assert not thread.is_alive()


def test_once_returns_the_step_result(server_url):
    assert Lane("once", server_url, lambda conn: False).run(once=True) is True

    def broken(conn):
        raise RuntimeError("boom")

    assert Lane("once_broken", server_url, broken).run(once=True) is False
    assert heartbeat_row(server_url, "once_broken") == ("error", "RuntimeError: boom")


def test_long_steps_keep_the_heartbeat_fresh_and_see_a_stop(server_url):
    lane = Lane("long", server_url, lambda conn: False)
    with psycopg.connect(server_url) as conn:
        assert lane.between_units(conn) is False and heartbeat_row(server_url, "long") is None  # beat 20 s ago at most
        lane.heartbeat.last -= 21  # as if the unit took 21 s
        assert lane.between_units(conn) is False and heartbeat_row(server_url, "long") == ("ok", None)
        lane.stop()
        assert lane.between_units(conn) is True
