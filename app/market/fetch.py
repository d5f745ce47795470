"""Venue REST fetchers: child candles for a time range, paged per venue, politely.

Each venue is asked for windows of at most its page size; the parser (app/market/candles.py) turns a
page into decoded candles (judged by SQL when written). Rate limits are respected with a minimum gap
between requests, HTTP 429/418 waits for Retry-After, 5xx and broken bodies (truncated JSON) back off and
retry; a window that still fails raises VenueFetchError so the caller records it and nothing is
invented for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.market.candles import PARSERS, Candle, VenueResponseError

log = logging.getLogger(__name__)

INTERVALS = {"1m": 60, "5m": 300}


class VenueFetchError(RuntimeError):
    """A window could not be fetched after retries."""


@dataclass(frozen=True)
class VenueSpec:
    """How one venue pages its candle endpoint."""

    page_size: int
    min_gap_sec: float
    params: Callable[[str, int, datetime, datetime, int], dict[str, Any]]


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _s(t: datetime) -> int:
    return int(t.timestamp())


# How each registry venue pages (tests/test_venue_registry.py checks the keys against the registry).
VENUE_SPECS: dict[str, VenueSpec] = {
    # GET /api/v3/klines: startTime/endTime inclusive in ms, limit <= 1000.
    "binance": VenueSpec(
        1000,
        0.1,
        lambda sym, iv, a, b, n: {
            "symbol": sym,
            "interval": f"{iv // 60}m",
            "startTime": _ms(a),
            "endTime": _ms(b) - 1,
            "limit": n,
        },
    ),
    # GET /v5/market/kline: start/end in ms, limit <= 1000, newest first.
    "bybit": VenueSpec(
        1000,
        0.1,
        lambda sym, iv, a, b, n: {
            "category": "spot",
            "symbol": sym,
            "interval": str(iv // 60),
            "start": _ms(a),
            "end": _ms(b) - 1,
            "limit": n,
        },
    ),
    # GET /api/v5/market/history-candles: after = older than (ms), before = newer than (ms), limit <= 100.
    "okx": VenueSpec(
        100,
        0.25,
        lambda sym, iv, a, b, n: {
            "instId": sym,
            "bar": f"{iv // 60}m",
            "after": _ms(b),
            "before": _ms(a) - 1,
            "limit": n,
        },
    ),
    # GET /products/<id>/candles: granularity s, start/end ISO, at most 300 candles.
    "coinbase": VenueSpec(
        300,
        0.2,
        lambda sym, iv, a, b, n: {
            "granularity": iv,
            "start": a.isoformat(),
            "end": (b - timedelta(seconds=iv)).isoformat(),
        },
    ),
    # GET /api/v2/ohlc/<pair>/: step s, start/end s, limit <= 1000.
    "bitstamp": VenueSpec(
        1000, 0.2, lambda sym, iv, a, b, n: {"step": iv, "start": _s(a), "end": _s(b) - iv, "limit": n}
    ),
    # GET /v2/candles/trade:<tf>:<sym>/hist: start/end ms, limit <= 10000, sort=1 oldest first.
    "bitfinex": VenueSpec(
        10000, 0.7, lambda sym, iv, a, b, n: {"start": _ms(a), "end": _ms(b) - 1, "limit": n, "sort": 1}
    ),
}


@dataclass
class FetchStats:
    requests: int = 0
    candles: int = 0
    rejected: int = 0
    retries: int = 0


class VenueFetcher:
    """Fetches one venue's child candles over a range, window by window."""

    def __init__(
        self,
        venue: str,
        config: dict[str, Any],
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = 5,
        backoff_sec: float = 1.0,
    ):
        if venue not in VENUE_SPECS:
            raise ValueError(f"unknown price venue {venue!r}")
        self.venue = venue
        self.spec = VENUE_SPECS[venue]
        self.symbol = config["symbol"]
        self.interval_sec = INTERVALS.get(config.get("child_interval", "1m"))
        if self.interval_sec is None:
            raise ValueError(f"{venue}: child_interval must be one of {', '.join(INTERVALS)}")
        self.url = config["api_base"].rstrip("/") + config["endpoint"]
        self.page_size = int(config.get("page_size", self.spec.page_size))
        self.min_gap_sec = float(config.get("min_request_interval_sec", self.spec.min_gap_sec))
        self.client = client or httpx.Client(timeout=30.0, headers={"User-Agent": "mqnode/0.1"})
        self.sleep = sleep
        self.max_retries = max_retries
        self.backoff_sec = backoff_sec
        self.stats = FetchStats()
        self._last_request = 0.0

    def windows(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
        step = timedelta(seconds=self.interval_sec * self.page_size)
        a = start
        while a < end:
            b = min(a + step, end)
            yield a, b
            a = b

    def fetch_window(self, start: datetime, end: datetime) -> list[Candle]:
        params = self.spec.params(self.symbol, self.interval_sec, start, end, self.page_size)
        attempt = 0
        while True:
            wait = self.min_gap_sec - (time.monotonic() - self._last_request)
            if wait > 0:
                self.sleep(wait)
            self._last_request = time.monotonic()
            self.stats.requests += 1
            try:
                response = self.client.get(self.url, params=params)
                problem, delay = self._problem(response, attempt)
                if problem is None:
                    parsed = PARSERS[self.venue](response.content, self.symbol, self.interval_sec)
                    inside = [c for c in parsed.candles if start <= c.open_time < end]
                    self.stats.candles += len(inside)
                    self.stats.rejected += len(parsed.rejected)
                    return inside
            except (httpx.TransportError, VenueResponseError) as exc:
                problem, delay = f"{type(exc).__name__}: {exc}", self.backoff_sec * 2**attempt
            if attempt >= self.max_retries:
                raise VenueFetchError(f"{self.venue} {start.isoformat()}..{end.isoformat()}: {problem}")
            attempt += 1
            self.stats.retries += 1
            log.warning("%s: %s; retry %d/%d in %.1fs", self.venue, problem, attempt, self.max_retries, delay)
            self.sleep(delay)

    def _problem(self, response: httpx.Response, attempt: int) -> tuple[str | None, float]:
        if response.status_code in (429, 418):
            retry_after = response.headers.get("Retry-After")
            try:
                delay = float(retry_after) if retry_after else self.backoff_sec * 2**attempt
            except ValueError:
                delay = self.backoff_sec * 2**attempt
            return f"rate limited (HTTP {response.status_code})", delay
        if response.status_code >= 500:
            return f"HTTP {response.status_code}", self.backoff_sec * 2**attempt
        if response.status_code >= 400:
            raise VenueFetchError(f"{self.venue}: HTTP {response.status_code}: {response.text[:200]}")
        return None, 0.0

    def fetch(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime, list[Candle]]]:
        """(window start, window end, candles) for every window of [start, end), oldest first."""
        for a, b in self.windows(start, end):
            yield a, b, self.fetch_window(a, b)


def utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
