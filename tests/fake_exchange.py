"""A fake exchange for the venue fetchers: real HTTP on loopback, each venue's URL and response shape.

Candles are a deterministic function of their minute; tests script faults: a queue of HTTP behaviours
consumed by the next requests ('429', '500', 'truncated') and corrupted minutes ('zero', 'negative',
'nan', 'duplicate') put into whichever page contains them. Pages are served in the venue's own order.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PATHS = {
    "/api/v3/klines": "binance",
    "/v5/market/kline": "bybit",
    "/api/v5/market/history-candles": "okx",
    "/products/BTC-USD/candles": "coinbase",
    "/api/v2/ohlc/btcusd/": "bitstamp",
    "/v2/candles/trade:1m:tBTCUSD/hist": "bitfinex",
}
PAGE_LIMIT = {"binance": 1000, "bybit": 1000, "okx": 100, "coinbase": 300, "bitstamp": 1000, "bitfinex": 10000}


def price(minute: int) -> tuple[str, str, str, str, str]:
    """(open, high, low, close, volume) of the candle starting at unix minute `minute`."""
    base = 40000 + (minute % 97)
    return str(base), str(base + 5), str(base - 5), str(base + 1), f"{1 + minute % 7}.5"


class FakeExchange:
    def __init__(self) -> None:
        self.faults: list[str] = []
        self.bad_minutes: dict[int, str] = {}
        self.requests: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"exchange": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def window(self, venue: str, q: dict[str, str]) -> tuple[int, int]:
        """[first minute, last minute] the request asks for."""
        if venue in ("binance",):
            return int(q["startTime"]) // 60000, int(q["endTime"]) // 60000
        if venue in ("bybit", "bitfinex"):
            return int(q["start"]) // 60000, int(q["end"]) // 60000
        if venue == "okx":
            return (int(q["before"]) + 1) // 60000, (int(q["after"]) - 1) // 60000
        if venue == "coinbase":
            iso = lambda v: int(datetime.fromisoformat(v).timestamp()) // 60  # noqa: E731
            return iso(q["start"]), iso(q["end"])
        return int(q["start"]) // 60, int(q["end"]) // 60  # bitstamp

    def page(self, venue: str, q: dict[str, str]) -> bytes:
        first, last = self.window(venue, q)
        minutes = list(range(first, last + 1))[: PAGE_LIMIT[venue]]
        rows = []
        for m in minutes:
            o, h, lo, c, v = price(m)
            fault = self.bad_minutes.get(m)
            if fault == "zero":
                lo = "0"
            elif fault == "negative":
                o = "-1"
            elif fault == "nan":
                c = "NaN"
            rows.append(self.render(venue, m, o, h, lo, c, v))
            if fault == "duplicate":
                rows.append(self.render(venue, m, o, h, lo, c, v))
        if venue in ("bybit", "okx", "coinbase"):
            rows.reverse()  # newest first, as these venues answer
        if any(f == "shuffle" for f in self.bad_minutes.values()):
            rows = rows[1::2] + rows[::2]  # out of order
        body = self.envelope(venue, rows)
        return json.dumps(body).encode()

    @staticmethod
    def render(venue: str, m: int, o: str, h: str, lo: str, c: str, v: str):
        ms, s = m * 60000, m * 60
        if venue == "binance":
            return [ms, o, h, lo, c, v, ms + 59999, "1000.0", 10, "0", "0", "0"]
        if venue == "bybit":
            return [str(ms), o, h, lo, c, v, "1000.0"]
        if venue == "okx":
            return [str(ms), o, h, lo, c, v, "1000.0", "1000.0", "1"]
        if venue == "coinbase":
            return [s, float(lo) if lo != "NaN" else lo, float(h), float(o), c if c == "NaN" else float(c), float(v)]
        if venue == "bitstamp":
            return {"timestamp": str(s), "open": o, "high": h, "low": lo, "close": c, "volume": v}
        return [ms, float(o), c if c == "NaN" else float(c), float(h), float(lo), float(v)]  # bitfinex

    @staticmethod
    def envelope(venue: str, rows: list):
        if venue == "bybit":
            return {"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "symbol": "BTCUSDT", "list": rows}}
        if venue == "okx":
            return {"code": "0", "msg": "", "data": rows}
        if venue == "bitstamp":
            return {"data": {"pair": "BTC/USD", "ohlc": rows}}
        return rows


class _Handler(BaseHTTPRequestHandler):
    exchange: FakeExchange

    def log_message(self, *args) -> None:
        return

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        venue = PATHS.get(parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.exchange.lock:
            self.exchange.requests.append((venue, query))
            fault = self.exchange.faults.pop(0) if self.exchange.faults else None
        if venue is None:
            self._send(404, b'{"error": "not found"}')
        elif fault == "429":
            self._send(429, b'{"code": -1003, "msg": "Too many requests"}', {"Retry-After": "0"})
        elif fault == "500":
            self._send(500, b"<html>internal error</html>", content_type="text/html")
        elif fault == "truncated":
            self._send(200, self.exchange.page(venue, query)[:40])
        else:
            self._send(200, self.exchange.page(venue, query))

    def _send(self, status: int, body: bytes, headers: dict | None = None, content_type="application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def minute_of(t: datetime) -> int:
    return int(t.astimezone(UTC).timestamp()) // 60
