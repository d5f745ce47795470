"""A local exchange for the demo: a recorded real 1m candle series served as Binance's /api/v3/klines.

The recording (tests/fixtures/exchanges/binanceus, 21 days of real Binance.US BTCUSDT minutes) is replayed
at shifted times: its last minute maps to the minute before `anchor`, earlier minutes before it, and later
minutes cycle through the recording again, so the demo's price lane has real price moves for the days of
its synthetic chain and keeps getting new closed candles while it runs. Only closed minutes are served
(like a real venue), at most `limit` per page, oldest first. The recording has no quote volume or trade
counts; those fields are null.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from app.settings import PROJECT_DIR

RECORDING = PROJECT_DIR / "tests" / "fixtures" / "exchanges" / "binanceus" / "BTCUSD_1m_20230301_20230321.csv"


def load_recording(path: Path = RECORDING) -> list[tuple[str, str, str, str, str]]:
    """(open, high, low, close, volume) strings of every minute, oldest first (exactly as recorded)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [(r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in rows]


class ReplayExchange:
    """Serves the recording on loopback in a background thread."""

    def __init__(self, anchor: datetime, symbol: str = "BTCUSD", path: Path = RECORDING, host: str = "127.0.0.1"):
        self.rows = load_recording(path)
        self.symbol = symbol
        self.anchor_minute = int(anchor.timestamp()) // 60
        self.clock = time.time
        handler = type("Handler", (_Handler,), {"exchange": self})
        self.httpd = ThreadingHTTPServer((host, 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="replay-exchange", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.httpd.server_address[0]}:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def candle(self, minute: int) -> list:
        o, h, low, c, v = self.rows[(minute - self.anchor_minute) % len(self.rows)]
        ms = minute * 60_000
        return [ms, o, h, low, c, v, ms + 59_999, None, None, None, None, "0"]

    def klines(self, query: dict[str, str]) -> tuple[int, object]:
        if query.get("symbol") != self.symbol or query.get("interval") != "1m":
            return 400, {"code": -1121, "msg": f"Invalid symbol or interval (replay serves {self.symbol} 1m only)."}
        try:
            first = int(query["startTime"]) // 60_000
            last = int(query.get("endTime", str((first + 1000) * 60_000))) // 60_000
            limit = min(int(query.get("limit", "500")), 1000)
        except (KeyError, ValueError):
            return 400, {"code": -1102, "msg": "startTime, endTime and limit must be integers."}
        closed = int(self.clock()) // 60 - 1  # the newest minute that has ended
        minutes = range(first, min(last, closed) + 1)
        return 200, [self.candle(m) for m in minutes[:limit]]


class _Handler(BaseHTTPRequestHandler):
    exchange: ReplayExchange

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        if url.path != "/api/v3/klines":
            status, body = 404, {"code": -1, "msg": f"not served here: {url.path}"}
        else:
            status, body = self.exchange.klines({k: v[-1] for k, v in parse_qs(url.query).items()})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args) -> None:
        pass
