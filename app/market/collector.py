"""`mqnode collector binance`: the WebSocket speed lane for Binance spot.

Reads the kline stream, keeps confirmed 1m candles only (k.x == true), and turns every bucket of them into
one 10m row: the bucket's child candles (the ten klines, gaps filled from REST klines) with quality
metadata: complete (all ten from the stream), repaired (gaps filled from REST) or partial (still
missing), the data source mode, expected/actual child counts, first and last receive time, disconnect
and gap counts. Its OHLCV is not computed here: core.write_venue_price_10m stores the children in
raw.venue_candles and aggregates them as it does REST candles (core.venue_price_10m_rows), with the same
checks, precedence, composer rewind and NOTIFY. Reconnects with backoff. Rows go to the local database
(PRICE_WS_OUTPUT_MODE=local_db) or to the internal ingest route of another MQNODE (remote_push, with
retries), so the collector can run on a host that has no database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import websockets

from app.market.candles import Candle
from app.market.pushed_rows import PushedRowError

log = logging.getLogger(__name__)

EXPECTED_CHILDREN = 10
BUCKET = timedelta(minutes=10)
MAX_SKIPPED_BUCKETS = 144  # a day of whole buckets missed while disconnected is repaired from REST


@dataclass(frozen=True)
class Kline:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal | None
    trades: int | None
    received_at: datetime | None  # None: filled from REST
    raw: Any = None  # the kline as received (the stream's "k" object, or the REST row)


def parse_kline_message(text: str | bytes, received_at: datetime) -> Kline | None:
    """A confirmed 1m kline from a stream message, or None (unconfirmed, other events)."""
    message = json.loads(text, parse_float=Decimal)
    if isinstance(message, dict) and "data" in message and "stream" in message:
        message = message["data"]  # combined-stream envelope
    k = message.get("k") if isinstance(message, dict) else None
    if not isinstance(k, dict) or message.get("e") != "kline" or k.get("x") is not True or k.get("i") != "1m":
        return None
    return Kline(
        datetime.fromtimestamp(int(k["t"]) // 1000, UTC),
        Decimal(k["o"]),
        Decimal(k["h"]),
        Decimal(k["l"]),
        Decimal(k["c"]),
        Decimal(k["v"]),
        Decimal(k["q"]) if k.get("q") is not None else None,
        int(k["n"]) if k.get("n") is not None else None,
        received_at,
        k,
    )


def bucket_of(t: datetime) -> datetime:
    return datetime.fromtimestamp(int(t.timestamp()) // 600 * 600, UTC)


@dataclass
class BucketState:
    klines: dict[datetime, Kline] = field(default_factory=dict)
    disconnects: int = 0


class TenMinuteAggregator:
    """Groups confirmed 1m klines by 10m bucket; a bucket is finished by its tenth minute or a later kline."""

    def __init__(self, symbol: str):
        self.symbol = symbol
        self.buckets: dict[datetime, BucketState] = {}
        self.finished_before: datetime | None = None

    def add(self, kline: Kline) -> list[datetime]:
        """Store a kline; return the buckets that are now finished (oldest first).

        Whole buckets the stream skipped (a long disconnect) since the last finished one are opened
        empty, so they are finished too and filled from REST (up to MAX_SKIPPED_BUCKETS of them).
        """
        bucket = bucket_of(kline.open_time)
        if self.finished_before is not None and bucket < self.finished_before:
            return []  # a late duplicate of a bucket already written
        if self.finished_before is not None:
            skipped = self.finished_before
            while skipped < bucket and (bucket - skipped) <= MAX_SKIPPED_BUCKETS * BUCKET:
                self.buckets.setdefault(skipped, BucketState())
                skipped += BUCKET
        self.buckets.setdefault(bucket, BucketState()).klines[kline.open_time] = kline
        done = [b for b in sorted(self.buckets) if b < bucket]
        if len(self.buckets[bucket].klines) == EXPECTED_CHILDREN:
            done.append(bucket)
        return done

    def note_disconnect(self) -> None:
        """Count a lost connection against the bucket being collected (the next one when none is open)."""
        open_buckets = sorted(self.buckets)
        if open_buckets:
            bucket = open_buckets[-1]
        elif self.finished_before is not None:
            bucket = self.finished_before
        else:
            return  # nothing collected yet: the first bucket is repaired from REST anyway
        self.buckets.setdefault(bucket, BucketState()).disconnects += 1

    async def finish(
        self, bucket: datetime, repair: Callable[[datetime], Awaitable[list[Candle]]] | None
    ) -> dict[str, Any] | None:
        state = self.buckets.pop(bucket)
        self.finished_before = max(self.finished_before or bucket, bucket + timedelta(minutes=10))
        streamed = dict(state.klines)
        gaps = EXPECTED_CHILDREN - len(streamed)
        klines = dict(streamed)
        if gaps and repair is not None:
            try:
                for c in await repair(bucket):
                    if c.open_time not in klines and bucket <= c.open_time < bucket + timedelta(minutes=10):
                        klines[c.open_time] = Kline(
                            c.open_time,
                            c.open,
                            c.high,
                            c.low,
                            c.close,
                            c.volume_base,
                            c.volume_quote,
                            c.trade_count,
                            None,
                            c.raw,
                        )
            except Exception as exc:  # a failed repair leaves the bucket partial, never invented
                log.warning("REST repair of %s failed: %s", bucket.isoformat(), exc)
        if not klines:
            return None
        ordered = [klines[t] for t in sorted(klines)]
        received = [k.received_at for k in streamed.values() if k.received_at is not None]
        quality = "complete" if not gaps else "repaired" if len(klines) == EXPECTED_CHILDREN else "partial"
        mode = "websocket" if not gaps else "websocket_rest_repair" if streamed else "rest_repair"
        return {
            "bucket_start_utc": bucket.isoformat(),
            "symbol": self.symbol,
            "child_candles": [
                {
                    "interval_sec": 60,
                    "open_time": k.open_time.isoformat(),
                    "open": str(k.open),
                    "high": str(k.high),
                    "low": str(k.low),
                    "close": str(k.close),
                    "volume_base": str(k.volume),
                    "volume_quote": None if k.quote_volume is None else str(k.quote_volume),
                    "trade_count": k.trades,
                    "raw": json.loads(json.dumps(k.raw, default=str)),  # decimals as strings, as REST's
                }
                for k in ordered
            ],
            "quality_status": quality,
            "data_source_mode": mode,
            "expected_child_candle_count": EXPECTED_CHILDREN,
            "actual_child_candle_count": len(ordered),
            "first_receive_time": min(received).isoformat() if received else None,
            "last_receive_time": max(received).isoformat() if received else None,
            "disconnect_count": state.disconnects,
            "gap_count": gaps,
        }


class RowsRefused(RuntimeError):
    """The receiver rejected the rows as invalid: sending them again cannot succeed."""


PUSH_BATCH_ROWS = 144  # a day of buckets per request (each carries its ten child candles): far below the body bound


async def push_rows(
    client: httpx.AsyncClient, url: str, token: str, rows: list[dict], retries: int = 5, backoff_sec: float = 1.0
) -> None:
    """POST rows to the internal ingest route, PUSH_BATCH_ROWS per request (a backlog after a long outage
    stays under the route's body bound), retrying transport errors, 429 and 5xx; other 4xx are final.
    Replays are idempotent, so rows of a batch sent before a failure may be sent again."""
    for first in range(0, len(rows), PUSH_BATCH_ROWS):
        await _push_batch(client, url, token, rows[first : first + PUSH_BATCH_ROWS], retries, backoff_sec)


async def _push_batch(
    client: httpx.AsyncClient, url: str, token: str, rows: list[dict], retries: int, backoff_sec: float
) -> None:
    for attempt in range(retries + 1):
        try:
            response = await client.post(url, json={"rows": rows}, headers={"Authorization": f"Bearer {token}"})
            if response.status_code < 300:
                return
            if response.status_code < 500 and response.status_code != 429:
                raise RowsRefused(f"remote ingest refused the rows: HTTP {response.status_code} {response.text[:300]}")
            problem = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            problem = repr(exc)
        if attempt < retries:
            log.warning("remote push failed (%s); retry %d/%d", problem, attempt + 1, retries)
            await asyncio.sleep(backoff_sec * 2**attempt)
    raise RuntimeError(f"remote push failed after {retries + 1} attempts: {problem}")


async def run_collector(
    ws_url: str,
    symbol: str,
    emit: Callable[[list[dict]], Awaitable[None]],
    repair: Callable[[datetime], Awaitable[list[Candle]]] | None,
    stop: asyncio.Event,
    reconnect_backoff_sec: float = 1.0,
    max_backoff_sec: float = 60.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Follow the stream until `stop` is set, emitting each finished 10m row.

    Rows that cannot be delivered (receiver down after the emitter's own retries) are kept and sent
    again with the next finished bucket and once more on stop; rows the receiver refuses as invalid
    are logged and dropped.
    """
    aggregator = TenMinuteAggregator(symbol)
    backoff = reconnect_backoff_sec
    undelivered: list[dict] = []

    async def deliver(rows: list[dict]) -> None:
        undelivered.extend(rows)
        try:
            await emit(list(undelivered))
        except (RowsRefused, PushedRowError) as exc:
            log.error("dropping %d row(s) the receiver refused: %s", len(undelivered), exc)
        except Exception as exc:  # receiver unavailable: keep the rows for the next attempt
            log.error("could not deliver %d row(s), kept for the next attempt: %s", len(undelivered), exc)
            return
        undelivered.clear()

    while not stop.is_set():
        try:
            async with websockets.connect(ws_url, open_timeout=10, ping_interval=20) as ws:
                backoff = reconnect_backoff_sec
                stopping = asyncio.ensure_future(stop.wait())
                try:
                    while True:
                        receiving = asyncio.ensure_future(ws.recv())
                        await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                        if not receiving.done():
                            receiving.cancel()
                            break  # stop requested while waiting for the next message
                        kline = parse_kline_message(receiving.result(), clock())
                        if kline is None:
                            continue
                        for bucket in aggregator.add(kline):
                            row = await aggregator.finish(bucket, repair)
                            if row is not None:
                                await deliver([row])
                finally:
                    stopping.cancel()
        except (TimeoutError, websockets.WebSocketException, OSError) as exc:
            aggregator.note_disconnect()
            log.warning("websocket disconnected (%s); reconnecting in %.1fs", exc, backoff)
        if not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, max_backoff_sec)
    if undelivered:
        await deliver([])


@dataclass(frozen=True)
class CollectorConfig:
    """Everything `mqnode collector binance` needs (from PRICE_WS_* settings)."""

    ws_url: str
    symbol: str
    rest_base: str
    output_mode: str  # local_db | remote_push
    database_url: str | None = None
    remote_url: str | None = None
    remote_token: str | None = None
    reconnect_backoff_sec: float = 1.0

    def check(self) -> None:
        if self.output_mode == "remote_push" and not (self.remote_url and self.remote_token):
            raise ValueError("remote_push needs PRICE_WS_REMOTE_INGEST_URL and PRICE_WS_REMOTE_INGEST_TOKEN")
        if self.output_mode == "local_db" and not self.database_url:
            raise ValueError("local_db needs a database (MQNODE_DATABASE_URL or the embedded default)")
        if self.output_mode not in ("local_db", "remote_push"):
            raise ValueError("PRICE_WS_OUTPUT_MODE must be local_db or remote_push")


async def collect_binance(config: CollectorConfig, stop: asyncio.Event) -> None:
    """Wire the stream to REST repair and to the chosen output, then follow it until `stop`."""
    from app.market.fetch import VenueFetcher
    from app.market.pushed_rows import upsert_rows, validate_row

    config.check()
    fetcher = VenueFetcher(
        "binance",
        {"api_base": config.rest_base, "endpoint": "/api/v3/klines", "symbol": config.symbol, "child_interval": "1m"},
        max_retries=3,
    )

    async def repair(bucket: datetime) -> list[Candle]:
        return await asyncio.to_thread(fetcher.fetch_window, bucket, bucket + timedelta(minutes=10))

    async with httpx.AsyncClient(timeout=30.0) as client:
        if config.output_mode == "remote_push":

            async def emit(rows: list[dict]) -> None:
                await push_rows(client, config.remote_url, config.remote_token, rows)
        else:
            import psycopg

            def write(rows: list[dict]) -> None:
                values = [validate_row(row, i) for i, row in enumerate(rows)]
                with psycopg.connect(config.database_url) as conn:
                    upsert_rows(conn, values)

            async def emit(rows: list[dict]) -> None:
                await asyncio.to_thread(write, rows)

        await run_collector(config.ws_url, config.symbol, emit, repair, stop, config.reconnect_backoff_sec)
