"""The loop every long-running lane shares: do a step, heartbeat, sleep until woken.

A lane wakes on the NOTIFY channels of the stage before it (sent by the SQL functions on commit) and on
a timer, whichever comes first; it records a heartbeat in worker_<lane>:heartbeat after every step (status
ok, or error with the message), so /api/v1/btc/health and the supervisor can see it is alive. A failing
step is logged, recorded and retried after a backoff; the lane itself keeps going. stop() (SIGTERM/SIGINT
in the commands) ends the loop between steps, never inside one, so no batch is left half-written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from app.db import connect

log = logging.getLogger(__name__)


def heartbeat(conn: psycopg.Connection, lane: str, error: str | None = None) -> None:
    """Record that `lane` is alive (and whether its last step failed); own transaction."""
    if conn.autocommit:
        conn.execute("SELECT core.lane_heartbeat(%s, %s)", (lane, error))
        return
    with conn.transaction():
        conn.execute("SELECT core.lane_heartbeat(%s, %s)", (lane, error))


class Heartbeat:
    """A lane's heartbeat: every completed step beats; long work beats between its committed units, at
    most every `every_sec`, so a lane that is working is never reported stale (nor floods the table)."""

    def __init__(self, lane: str, every_sec: float = 20.0):
        self.lane = lane
        self.every_sec = every_sec
        self.last = time.monotonic()

    def beat(self, conn: psycopg.Connection, error: str | None = None) -> None:
        heartbeat(conn, self.lane, error)
        self.last = time.monotonic()

    def beat_if_due(self, conn: psycopg.Connection) -> None:
        if time.monotonic() - self.last >= self.every_sec:
            self.beat(conn)


@dataclass
class Lane:
    """One lane: `step(conn)` does a unit of work on the lane's connection and returns whether more work
    is waiting (then the lane does not sleep)."""

    name: str
    database_url: str
    step: Callable[[psycopg.Connection], bool]
    channels: Sequence[str] = ()
    interval_sec: float = 30.0
    error_backoff_sec: float = 5.0
    max_backoff_sec: float = 120.0
    autocommit: bool = False  # for steps that must run outside a transaction block

    def __post_init__(self) -> None:
        self.stop_event = threading.Event()
        self.heartbeat = Heartbeat(self.name)

    def stop(self) -> None:
        self.stop_event.set()

    def between_units(self, conn: psycopg.Connection) -> bool:
        """For long steps (a first backfill) between committed units: keeps the heartbeat fresh (at most
        every 20 s, so the lane is not reported stale while it works) and says whether to stop now."""
        self.heartbeat.beat_if_due(conn)
        return self.stop_event.is_set()

    def run(self, once: bool = False) -> bool:
        """Loop until stop() (one step with once=True). Returns False when the last step failed."""
        conn = connect(self.database_url, autocommit=self.autocommit)
        listener = None
        if self.channels and not once:
            listener = connect(self.database_url, autocommit=True)
            for channel in self.channels:
                listener.execute(f"LISTEN {channel}")
        backoff = self.error_backoff_sec
        ok = True
        try:
            while not self.stop_event.is_set():
                try:
                    more = self.step(conn)
                    ok, backoff = True, self.error_backoff_sec
                    self.heartbeat.beat(conn)
                except (psycopg.Error, OSError, RuntimeError, ValueError) as exc:
                    ok, more = False, False
                    message = f"{type(exc).__name__}: {exc}"
                    log.error("lane %s: step failed (retry in %.0fs): %s", self.name, backoff, message)
                    if conn.closed or conn.broken:
                        conn = connect(self.database_url, autocommit=self.autocommit)
                    elif not conn.autocommit:
                        conn.rollback()
                    try:
                        self.heartbeat.beat(conn, message)
                    except psycopg.Error as hb_exc:
                        log.error("lane %s: heartbeat failed: %s", self.name, hb_exc)
                    if not once:
                        self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff_sec)
                    more = False
                if once:
                    break
                if not more and ok:
                    self._sleep(listener)
        finally:
            conn.close()
            if listener is not None:
                listener.close()
        return ok

    def _sleep(self, listener: psycopg.Connection | None) -> None:
        """Until a NOTIFY on the lane's channels, the timer, or stop(); checks stop every second."""
        deadline = time.monotonic() + self.interval_sec
        while not self.stop_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if listener is None:
                self.stop_event.wait(min(left, 1.0))
                continue
            woken = any(True for _ in listener.notifies(timeout=min(left, 1.0), stop_after=1))
            if woken:
                # Drain what else arrived (one step covers every event so far); the generator above is
                # finished by now: it holds the connection's lock while it runs.
                for _more in listener.notifies(timeout=0.05):
                    pass
                return
