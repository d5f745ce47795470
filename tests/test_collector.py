"""The Binance WebSocket collector against a local WebSocket server replaying kline messages.

Scripted stream: unconfirmed candles (ignored), a disconnect in the middle of a bucket, a minute that
never arrives (repaired from REST klines served by the fake exchange), then a complete bucket. Rows go
to the local database, or through a real `mqnode serve` (uvicorn on loopback) with remote_push.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
import pytest
import uvicorn
import websockets

from app.api.app import create_app
from app.market.collector import CollectorConfig, collect_binance
from tests.fake_exchange import FakeExchange, minute_of, price
from tests.test_price_ingest import expected_bucket

A = datetime(2024, 1, 1, tzinfo=UTC)  # bucket A: minute 7 missing from the stream, a disconnect after minute 4
B = A + timedelta(minutes=10)  # bucket B: complete from the stream


def kline(t: datetime, confirmed: bool) -> str:
    o, h, low, c, v = price(minute_of(t))
    ms = int(t.timestamp() * 1000)
    return json.dumps(
        {
            "e": "kline",
            "E": ms + 60000,
            "s": "BTCUSDT",
            "k": {
                "t": ms,
                "T": ms + 59999,
                "s": "BTCUSDT",
                "i": "1m",
                "o": o,
                "h": h,
                "l": low,
                "c": c,
                "v": v,
                "n": 10,
                "x": confirmed,
                "q": "1000.0",
            },
        }
    )


SCRIPT = [
    # first connection: minutes 0-4 of A, each preceded by an unconfirmed update, then the server drops it
    [m for i in range(5) for m in (kline(A + timedelta(minutes=i), False), kline(A + timedelta(minutes=i), True))],
    # second connection: minutes 5, 6, 8, 9 of A (7 never comes), then all of B
    [kline(A + timedelta(minutes=i), True) for i in (5, 6, 8, 9)]
    + [kline(B + timedelta(minutes=i), True) for i in range(10)],
]


class ReplayServer:
    def __init__(self) -> None:
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def handler(ws):
            index = self.connections
            self.connections += 1
            for message in SCRIPT[index] if index < len(SCRIPT) else []:
                await ws.send(message)
            if index == 0:
                return  # closing the connection mid-bucket
            await asyncio.sleep(3600)

        async def main():
            self.server = await websockets.serve(handler, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()
            await self.server.serve_forever()

        self.loop.run_until_complete(main())

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/btcusdt@kline_1m"


def run_until_rows(config: CollectorConfig, url: str, rows: int, timeout: float = 60.0) -> None:
    async def main():
        stop = asyncio.Event()

        async def watch():
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if len(stored(url)) >= rows:
                    break
                await asyncio.sleep(0.1)
            stop.set()

        await asyncio.gather(collect_binance(config, stop), watch())

    asyncio.run(main())


def stored(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT bucket_start_utc, open_price_usd, high_price_usd, low_price_usd, close_price_usd, volume_btc,"
            " actual_child_candle_count, quality_status, data_source_mode, gap_count, disconnect_count,"
            " first_receive_time IS NOT NULL FROM core.binance_price_10m ORDER BY 1"
        ).fetchall()


@pytest.fixture
def exchange():
    fake = FakeExchange()
    yield fake
    fake.stop()


def expected_rows() -> list[tuple]:
    return [
        (*expected_bucket(A), "repaired", "websocket_rest_repair", 1, 1, True),
        (*expected_bucket(B), "complete", "websocket", 0, 0, True),
    ]


def test_collector_writes_local_rows_with_quality(server_url, exchange):
    server = ReplayServer()
    config = CollectorConfig(
        server.url, "BTCUSDT", exchange.url, "local_db", database_url=server_url, reconnect_backoff_sec=0.1
    )
    run_until_rows(config, server_url, 2)
    assert stored(server_url) == expected_rows()
    assert server.connections == 2
    repairs = [q for venue, q in exchange.requests if venue == "binance"]
    assert len(repairs) == 1 and int(repairs[0]["startTime"]) == int(A.timestamp() * 1000)


def test_collector_pushes_to_the_internal_route(server_url, exchange):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = uvicorn.Server(
        uvicorn.Config(create_app(server_url, "push-token"), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=api.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not api.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        server = ReplayServer()
        config = CollectorConfig(
            server.url,
            "BTCUSDT",
            exchange.url,
            "remote_push",
            remote_url=f"http://127.0.0.1:{port}/api/v1/internal/price/source/binance/10m",
            remote_token="push-token",
            reconnect_backoff_sec=0.1,
        )
        run_until_rows(config, server_url, 2)
    finally:
        api.should_exit = True
        thread.join(10)
    assert stored(server_url) == expected_rows()


def test_remote_push_needs_url_and_token():
    with pytest.raises(ValueError, match="PRICE_WS_REMOTE_INGEST_URL"):
        CollectorConfig("ws://x", "BTCUSDT", "http://x", "remote_push").check()


def test_whole_buckets_missed_while_disconnected_are_filled_from_rest(exchange, db_url):
    """Stream: all of A, then (after a long outage) the first minute of A+30m. Buckets A+10m and A+20m never
    arrived: they are finished from REST alone (rest_repair), the new bucket stays open; their OHLCV is
    the SQL aggregate of the children (core.write_venue_price_10m)."""
    from app.market.collector import Kline, TenMinuteAggregator
    from app.market.fetch import VenueFetcher
    from app.market.pushed_rows import upsert_rows, validate_row

    fetcher = VenueFetcher(
        "binance",
        {"api_base": exchange.url, "endpoint": "/api/v3/klines", "symbol": "BTCUSDT", "child_interval": "1m"},
        sleep=lambda _s: None,
    )

    async def repair(b):
        return fetcher.fetch_window(b, b + timedelta(minutes=10))

    def k(t):
        o, h, low, c, v = (D(x) for x in price(minute_of(t)))
        return Kline(t, o, h, low, c, v, None, None, t + timedelta(minutes=1))

    aggregator = TenMinuteAggregator("BTCUSDT")
    finished = []
    for i in range(10):
        finished += aggregator.add(k(A + timedelta(minutes=i)))
    assert finished == [A]
    asyncio.run(aggregator.finish(A, repair))
    aggregator.note_disconnect()
    later = A + timedelta(minutes=30)
    due = aggregator.add(k(later))
    assert due == [A + timedelta(minutes=10), A + timedelta(minutes=20)]
    rows = [asyncio.run(aggregator.finish(b, repair)) for b in due]
    for r in rows:
        assert (r["quality_status"], r["data_source_mode"], r["actual_child_candle_count"], r["gap_count"]) == (
            "repaired",
            "rest_repair",
            10,
            10,
        )
        assert r["first_receive_time"] is None
    with psycopg.connect(db_url) as conn:
        upsert_rows(conn, [validate_row(r, i) for i, r in enumerate(rows)])
        prices = conn.execute(
            "SELECT bucket_start_utc, open_price_usd, close_price_usd FROM core.binance_price_10m ORDER BY 1"
        ).fetchall()
    assert prices == [(b, expected_bucket(b)[1], expected_bucket(b)[4]) for b in due]
    assert rows[0]["disconnect_count"] == 1 and rows[1]["disconnect_count"] == 0


def test_undelivered_rows_are_kept_and_sent_again():
    """The receiver is down when bucket A finishes and back when B finishes: both rows arrive, in order."""
    from app.market.collector import run_collector

    server = ReplayServer()
    delivered: list[list[str]] = []
    attempts = []

    async def emit(rows):
        attempts.append(len(rows))
        if len(attempts) == 1:
            raise ConnectionError("receiver down")
        delivered.append([r["bucket_start_utc"] for r in rows])

    async def main():
        stop = asyncio.Event()

        async def watch():
            while not delivered:
                await asyncio.sleep(0.05)
            stop.set()

        await asyncio.wait_for(
            asyncio.gather(run_collector(server.url, "BTCUSDT", emit, None, stop, 0.1), watch()), timeout=30
        )

    asyncio.run(main())
    assert attempts == [1, 2]
    assert delivered == [[A.isoformat(), B.isoformat()]]
