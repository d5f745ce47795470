"""Progress of long work on stderr: done/total, rates and ETA (a redrawn line on a terminal, log lines otherwise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


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
