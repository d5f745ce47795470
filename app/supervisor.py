"""`mqnode run`: every lane in one command, each a child process, supervised.

Lanes (MQNODE_RUN_LANES picks them; all but the collector by default):
  chain           mqnode btc listen                 blocks -> raw facts -> btc_primitive_block -> 10m backbone
  price_ingest    mqnode prices ingest --all-enabled venue child candles -> <venue>_price_10m
  price_composer  mqnode prices compose --follow    venue rows -> mq_btc_price_10m
  rollups         mqnode rollups refresh            10m -> 1h -> 24h
  metrics         mqnode metrics run                registered metrics
  api             mqnode serve                      the Litestar API on MQNODE_API_HOST:MQNODE_API_PORT
  collector       mqnode collector binance          (opt-in) the Binance WebSocket speed lane
Every lane heartbeats into worker_<lane>:heartbeat itself; the supervisor does it for the API by asking
its /health, as often as core.lane_heartbeat_interval(). A lane that exits (crash, SIGKILL) is restarted
after a backoff that doubles from MQNODE_RUN_RESTART_BACKOFF_SEC up to MQNODE_RUN_MAX_RESTART_BACKOFF_SEC
(back to the first after a run longer than that), and the exit is recorded in its heartbeat. SIGTERM/SIGINT: every lane
gets SIGTERM, finishes the step it is in (a batch is one transaction) and exits; stragglers are killed
after the grace period. Child output is passed through, each line prefixed with its lane.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import psycopg

from app.lanes import heartbeat
from app.settings import PROJECT_DIR, Settings

log = logging.getLogger(__name__)

LANE_COMMANDS: dict[str, list[str]] = {
    "chain": ["btc", "listen"],
    "price_ingest": ["prices", "ingest", "--all-enabled"],
    "price_composer": ["prices", "compose", "--follow"],
    "rollups": ["rollups", "refresh"],
    "metrics": ["metrics", "run"],
    "api": ["serve"],
    "collector": ["collector", "binance"],
}
DEFAULT_LANES = ("chain", "price_ingest", "price_composer", "rollups", "metrics", "api")


def parse_lanes(text: str) -> list[str]:
    lanes = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in lanes if name not in LANE_COMMANDS]
    if unknown or not lanes:
        raise ValueError(f"MQNODE_RUN_LANES: unknown lane(s) {', '.join(unknown) or '(none given)'};"
                         f" choose from {', '.join(LANE_COMMANDS)}")  # fmt: skip
    return lanes


@dataclass
class LaneProcess:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    backoff_sec: float = Settings.run_restart_backoff_sec
    restarts: int = 0
    readers: list[threading.Thread] = field(default_factory=list)


class Supervisor:
    """Starts the lanes, restarts the ones that die, stops them all on stop()."""

    def __init__(
        self,
        lanes: list[str],
        database_url: str,
        settings: Settings,
        env: dict[str, str] | None = None,
        grace_sec: float | None = None,
        max_backoff_sec: float | None = None,
        out: Callable[[str], None] | None = None,
    ):
        self.database_url = database_url
        self.settings = settings
        self.grace_sec = settings.run_grace_sec if grace_sec is None else grace_sec
        self.first_backoff_sec = settings.run_restart_backoff_sec
        self.max_backoff_sec = settings.run_max_restart_backoff_sec if max_backoff_sec is None else max_backoff_sec
        self.env = {**os.environ, **(env or {}), "MQNODE_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
        self.lanes = [LaneProcess(name, LANE_COMMANDS[name], backoff_sec=self.first_backoff_sec) for name in lanes]
        self.stop_event = threading.Event()
        self.out = out or (lambda line: print(line, flush=True))
        self.api_url = f"http://{_connectable(settings.api_host)}:{settings.api_port}/health"

    # -- child processes -------------------------------------------------------------------------
    def _start(self, lane: LaneProcess) -> None:
        cmd = [sys.executable, "-m", "app.cli", *lane.argv]
        lane.proc = subprocess.Popen(
            cmd,
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        lane.started_at = time.monotonic()
        reader = threading.Thread(target=self._relay, args=(lane.name, lane.proc), daemon=True)
        reader.start()
        lane.readers = [reader]
        log.info("lane %s started (pid %d): mqnode %s", lane.name, lane.proc.pid, " ".join(lane.argv))

    def _relay(self, name: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.out(f"[{name}] {line.rstrip()}")

    def _record(self, lane: str, error: str | None) -> float | None:
        """The lane's heartbeat; returns core.lane_heartbeat_interval() in seconds (None: not recorded)."""
        try:
            with psycopg.connect(self.database_url, connect_timeout=5) as conn:
                return heartbeat(conn, lane, error)
        except psycopg.Error as exc:
            log.warning("could not record the heartbeat of %s: %s", lane, exc)
            return None

    def _check(self, lane: LaneProcess, now: float) -> None:
        if lane.proc is None:
            if now >= lane.restart_at:
                self._start(lane)
            return
        code = lane.proc.poll()
        if code is None:
            return
        ran = now - lane.started_at
        if ran > self.max_backoff_sec:
            lane.backoff_sec = self.first_backoff_sec
        message = (
            f"lane exited with code {code} after {ran:.0f}s; restart #{lane.restarts + 1} in {lane.backoff_sec:.0f}s"
        )
        log.error("lane %s: %s", lane.name, message)
        self._record(lane.name, message)
        lane.proc = None
        lane.restarts += 1
        lane.restart_at = now + lane.backoff_sec
        lane.backoff_sec = min(lane.backoff_sec * 2, self.max_backoff_sec)

    def _probe_api(self) -> float | None:
        """Ask the API's /health and record the answer as its heartbeat; returns the heartbeat interval."""
        try:
            response = httpx.get(self.api_url, timeout=5.0)
            error = None if response.status_code < 500 else f"/health answered HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"/health unreachable: {exc}"
        return self._record("api", error)

    # -- lifecycle -------------------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until stop(); returns 0 after a clean stop. The API is probed 2 s after the start, then
        every heartbeat interval (again after 2 s while the database cannot record it)."""
        for lane in self.lanes:
            self._start(lane)
        next_probe = time.monotonic() + 2.0
        while not self.stop_event.wait(0.5):
            now = time.monotonic()
            for lane in self.lanes:
                self._check(lane, now)
            if now >= next_probe and any(lane.name == "api" for lane in self.lanes):
                next_probe = now + (self._probe_api() or 2.0)
        return self._shutdown()

    def stop(self) -> None:
        self.stop_event.set()

    def _shutdown(self) -> int:
        running = [lane for lane in self.lanes if lane.proc is not None and lane.proc.poll() is None]
        for lane in running:
            log.info("stopping lane %s (pid %d)", lane.name, lane.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                lane.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_sec
        unclean = 0
        for lane in running:
            try:
                lane.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("lane %s did not stop within %.0fs; killing it", lane.name, self.grace_sec)
                lane.proc.kill()
                lane.proc.wait()
                unclean += 1
            for reader in lane.readers:
                reader.join(2)
        log.info("all lanes stopped")
        return 1 if unclean else 0

    def pid_of(self, name: str) -> int | None:
        lane = next(lane for lane in self.lanes if lane.name == name)
        return lane.proc.pid if lane.proc is not None and lane.proc.poll() is None else None


def _connectable(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
