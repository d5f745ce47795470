"""Progress of long work on stderr: done/total, rates and ETA (a redrawn line on a terminal, log lines otherwise)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class StageTimes:
    """Seconds spent in each stage of a pipeline (RPC fetch, JSON decode, map, write), summed over the
    threads and processes that ran it; thread-safe. A stage's seconds can exceed the wall time when
    several threads run it at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def merge(self, seconds: dict[str, float]) -> None:
        for stage, value in seconds.items():
            self.add(stage, value)

    def take(self) -> dict[str, float]:
        """The seconds so far, and start again from zero (a worker process hands its times back)."""
        with self._lock:
            taken, self.seconds = self.seconds, {}
        return taken

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def line(self, tx: int = 0) -> str:
        with self._lock:
            items = list(self.seconds.items())
        parts = []
        for stage, seconds in items:
            rate = f" = {tx / seconds:,.0f} tx/s" if tx and seconds > 0 else ""
            parts.append(f"{stage} {seconds:,.2f}s{rate}")
        return " | ".join(parts)


class Progress:
    """Counts units (blocks, buckets) and a second quantity (transactions) and reports rates."""

    def __init__(
        self,
        label: str,
        total: int | None,
        unit: str = "blocks",
        stream: TextIO | None = None,
        min_interval_sec: float = 0.5,
    ):
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.done = 0
        self.tx = 0
        self.started = time.monotonic()
        self.stages = StageTimes()  # filled by the loader (chain_sync.ingest_range) while it runs
        self._last_draw = 0.0
        self._interactive = self.stream.isatty()
        self._min_interval = min_interval_sec if self._interactive else max(min_interval_sec, 5.0)

    def advance(self, units: int, tx: int = 0) -> None:
        self.done += units
        self.tx += tx
        now = time.monotonic()
        if now - self._last_draw >= self._min_interval:
            self._last_draw = now
            self._draw(final=False)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.label}: {self.done:,}" + (f"/{self.total:,}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts.append(f"{100.0 * self.done / self.total:5.1f}%")
        parts.append(f"{rate:,.1f} {self.unit}/s")
        if self.tx:
            parts.append(f"{self.tx / elapsed:,.0f} tx/s")
        if self.total and rate > 0 and self.done < self.total:
            remaining = (self.total - self.done) / rate
            parts.append(f"ETA {int(remaining // 3600):d}:{int(remaining % 3600 // 60):02d}:{int(remaining % 60):02d}")
        parts.append(f"elapsed {elapsed:,.1f}s")
        return " | ".join(parts)

    def _draw(self, final: bool) -> None:
        if self._interactive:
            self.stream.write("\r" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def finish(self) -> None:
        self._draw(final=True)
        if self.stages.seconds:
            self.stream.write(f"{self.label} stages (seconds summed over threads): {self.stages.line(self.tx)}\n")
            self.stream.flush()
