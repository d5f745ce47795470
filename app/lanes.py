"""The loop every long-running lane shares: do a step, heartbeat, sleep until woken.

A lane wakes on the NOTIFY channels of the stage before it (sent by the SQL functions on commit) and on
a timer, whichever comes first; it records a heartbeat in worker_<lane>:heartbeat after every step (status
ok, or error with the message), so /api/v1/btc/health and the supervisor can see it is alive. A failing
step is logged, recorded and retried after a backoff that doubles per failure (MQNODE_LANE_ERROR_BACKOFF_SEC up
to MQNODE_LANE_MAX_BACKOFF_SEC); the lane itself keeps going. stop() (SIGTERM/SIGINT in the commands) ends
the loop between steps, never inside one, so no batch is left half-written. The heartbeat's period is the
database's core.lane_heartbeat_interval() (api.lane_status calls a lane stale after core.lane_stale_after(),
derived from it): long steps beat between their units and a sleeping lane beats as often.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from app.db import connect
from app.settings import Settings

log = logging.getLogger(__name__)


_BEAT = "SELECT core.lane_heartbeat(%s, %s), extract(EPOCH FROM core.lane_heartbeat_interval())::float8"


def heartbeat(conn: psycopg.Connection, lane: str, error: str | None = None) -> float:
    """Record that `lane` is alive (and whether its last step failed); own transaction. Returns the heartbeat
    period in seconds (core.lane_heartbeat_interval())."""
    if conn.autocommit:
        return conn.execute(_BEAT, (lane, error)).fetchone()[1]
    with conn.transaction():
        return conn.execute(_BEAT, (lane, error)).fetchone()[1]


def heartbeat_interval(conn: psycopg.Connection) -> float:
    """core.lane_heartbeat_interval() in seconds, read without leaving a transaction open."""
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    (seconds,) = conn.execute("SELECT extract(EPOCH FROM core.lane_heartbeat_interval())::float8").fetchone()
    if idle and not conn.autocommit:
        conn.commit()
    return seconds


class Heartbeat:
    """A lane's heartbeat: every completed step beats; long work beats between its committed units, and a
    sleeping lane while it waits, at most every core.lane_heartbeat_interval() (read from the database at the
    first beat), so a lane that is alive is never reported stale (nor floods the table)."""

    def __init__(self, lane: str):
        self.lane = lane
        self.every_sec: float | None = None
        self.last = time.monotonic()

    def beat(self, conn: psycopg.Connection, error: str | None = None) -> None:
        self.every_sec = heartbeat(conn, self.lane, error)
        self.last = time.monotonic()

    def beat_if_due(self, conn: psycopg.Connection) -> None:
        if self.every_sec is None:
            self.every_sec = heartbeat_interval(conn)
        if time.monotonic() - self.last >= self.every_sec:
            self.beat(conn)


@dataclass
class Lane:
    """One lane: `step(conn)` does a unit of work on the lane's connection and returns whether more work
    is waiting (then the lane does not sleep). `connection`: an open connection to work on (else one is
    opened from database_url; a broken one is replaced from database_url, without it the error is raised).
    `on_error(conn, message)`: records a failed step in the stage's own checkpoint (after the rollback)."""

    name: str
    database_url: str | None
    step: Callable[[psycopg.Connection], bool]
    channels: Sequence[str] = ()
    interval_sec: float = Settings.lane_interval_sec
    error_backoff_sec: float = Settings.lane_error_backoff_sec
    max_backoff_sec: float = Settings.lane_max_backoff_sec
    autocommit: bool = False  # for steps that must run outside a transaction block
    connection: psycopg.Connection | None = None
    on_error: Callable[[psycopg.Connection, str], None] | None = None

    def __post_init__(self) -> None:
        self.stop_event = threading.Event()
        self.heartbeat = Heartbeat(self.name)

    def stop(self) -> None:
        self.stop_event.set()

    def between_units(self, conn: psycopg.Connection) -> bool:
        """For long steps (a first backfill) between committed units: keeps the heartbeat fresh (at most
        every core.lane_heartbeat_interval(), so the lane is not reported stale while it works) and says
        whether to stop now."""
        self.heartbeat.beat_if_due(conn)
        return self.stop_event.is_set()

    def run(self, once: bool = False) -> bool:
        """Loop until stop() (one step with once=True). Returns False when the last step failed."""
        conn = self.connection or connect(self.database_url, autocommit=self.autocommit)
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
                        if self.database_url is None:
                            raise
                        if conn is not self.connection:
                            conn.close()
                        conn = connect(self.database_url, autocommit=self.autocommit)
                    elif not conn.autocommit:
                        conn.rollback()
                    try:
                        if self.on_error is not None:
                            self.on_error(conn, message)
                        self.heartbeat.beat(conn, message)
                    except psycopg.Error as hb_exc:
                        log.error("lane %s: recording the failure failed: %s", self.name, hb_exc)
                    if not once:
                        self.stop_event.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff_sec)
                    more = False
                if once:
                    break
                if not more and ok:
                    self._sleep(conn, listener)
        finally:
            if conn is not self.connection:
                conn.close()
            if listener is not None:
                listener.close()
        return ok

    def _sleep(self, conn: psycopg.Connection, listener: psycopg.Connection | None) -> None:
        """Until a NOTIFY on the lane's channels, the timer, or stop(); checks stop every second and keeps
        the heartbeat fresh meanwhile (a timer longer than the stale threshold is no stale lane)."""
        deadline = time.monotonic() + self.interval_sec
        while not self.stop_event.is_set():
            try:
                self.heartbeat.beat_if_due(conn)
            except psycopg.Error as exc:  # a broken connection: the next step fails and replaces it
                log.error("lane %s: heartbeat failed: %s", self.name, exc)
                self.heartbeat.last = time.monotonic()
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
