"""Read API benchmark: GET /api/v1/btc/primitive?interval=10m for one UTC day (144 rows x 52 columns, ~240 KB
of JSON) next to the bare SQL time of the same SELECT.

Prints p50/p99 latency (and requests/s) of:
- bare SQL: the API's SELECT through psycopg on a kept connection in the reader's session, rows fetched;
- the app in-process: the ASGI app called directly (routing, validation, the SELECT, JSON encoding; no HTTP);
- the API over HTTP: `uvicorn` on loopback in a subprocess (as `mqnode serve` runs it), one keep-alive client
  (stdlib http.client, so client overhead stays small), timed until the body is read, and with JSON decoding;
- the API under N concurrent clients: requests/s.
Then the ratios of the p50s to bare SQL (goal: API p50 within 2x of bare SQL).
The database holds the read path's test data (tests/pipeline.py: every stage over two days and a bit).
Usage: python -m bench.api [--requests 500] [--warmup 50] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.util
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode

import psycopg
from psycopg.types.string import TextLoader

from app.api.app import create_app
from app.api.database import READER_SESSION
from app.api.pages import PageRequest, page_query
from bench.common import bench_database, machine_line
from tests.pipeline import T0, populate

DAY_START = T0.replace(day=2)  # 2024-01-02: a full UTC day of the pipeline's data
DAY_END = T0.replace(day=3)
ROUTE = "/api/v1/btc/primitive"
QUERY = urlencode({"interval": "10m", "start": DAY_START.isoformat(), "end": DAY_END.isoformat()})
ROWS = 144


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(run: Callable[[], object], requests: int, warmup: int) -> list[float]:
    samples = []
    for n in range(warmup + requests):
        t = time.perf_counter()
        run()
        if n >= warmup:
            samples.append(time.perf_counter() - t)
    return samples


def line(name: str, samples: list[float], wall_sec: float | None = None) -> str:
    rate = len(samples) / (wall_sec if wall_sec is not None else sum(samples))
    return (
        f"{name}: p50 {percentile(samples, 0.5) * 1000:.2f} ms, p99 {percentile(samples, 0.99) * 1000:.2f} ms, "
        f"{rate:,.0f} requests/s"
    )


def bare_sql(url: str, requests: int, warmup: int) -> list[float]:
    """The API's SELECT on a plain (synchronous) psycopg connection in the reader's session."""
    query, params = page_query("btc_primitive_10m", PageRequest(DAY_START, DAY_END, 1000, "asc", "json"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(READER_SESSION)
        conn.adapters.register_loader("numeric", TextLoader)

        def run() -> None:
            assert len(conn.execute(query, params).fetchall()) == ROWS

        return timed(run, requests, warmup)


def in_process(url: str, requests: int, warmup: int) -> list[float]:
    """The ASGI app called directly, as a server would call it, without the HTTP layer."""
    app = create_app(url, None)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": ROUTE,
        "raw_path": ROUTE.encode(),
        "query_string": QUERY.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def measure() -> list[float]:
        samples = []
        for n in range(warmup + requests):
            sent: list[dict] = []

            async def send(message: dict, sent: list[dict] = sent) -> None:
                sent.append(message)

            t = time.perf_counter()
            await app(dict(scope), receive, send)
            if n >= warmup:
                samples.append(time.perf_counter() - t)
            assert sent[0]["status"] == 200
        return samples

    async def measure_and_close() -> list[float]:
        try:
            return await measure()
        finally:
            await app.state.reads.close()

    return asyncio.run(measure_and_close())


def serve(url: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(url, None), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_server(url: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "bench.api", "--serve", url, str(port)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the API server did not answer /health within 30 s")


def get_body(conn: http.client.HTTPConnection) -> bytes:
    conn.request("GET", f"{ROUTE}?{QUERY}")
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, body[:200]
    return body


def over_http(port: int, requests: int, warmup: int, decode: bool) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    try:
        if decode:
            return timed(lambda: json.loads(get_body(conn)), requests, warmup)
        return timed(lambda: get_body(conn), requests, warmup)
    finally:
        conn.close()


def concurrent(port: int, requests: int, clients: int) -> tuple[list[float], float]:
    samples: list[float] = []
    lock = threading.Lock()

    def client(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for _ in range(count):
            t = time.perf_counter()
            get_body(conn)
            elapsed = time.perf_counter() - t
            with lock:
                samples.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=client, args=(requests // clients,)) for _ in range(clients)]
    t = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    http_impl = "httptools" if importlib.util.find_spec("httptools") else "h11"
    print(machine_line())
    with bench_database() as url:
        populate(url)
        shown = f"{ROUTE}?interval=10m&start={DAY_START:%Y-%m-%dT%H:%MZ}&end={DAY_END:%Y-%m-%dT%H:%MZ}"
        print(f"GET {shown}: {ROWS} rows; uvicorn HTTP implementation: {http_impl}")
        sql = bare_sql(url, args.requests, args.warmup)
        print(line(f"bare SQL (psycopg, reader connection, {args.requests} SELECTs)", sql))
        app = in_process(url, args.requests, args.warmup)
        print(line("app in-process (ASGI call, no HTTP)", app))
        proc, port = start_server(url)
        try:
            body = over_http(port, args.requests, args.warmup, decode=False)
            print(line(f"API over HTTP, one client, body read ({len(get_body_once(port)):,} bytes)", body))
            decoded = over_http(port, args.requests, args.warmup, decode=True)
            print(line("API over HTTP, one client, body read + json.loads", decoded))
            many, wall = concurrent(port, args.requests, args.concurrency)
            print(line(f"API over HTTP, {args.concurrency} concurrent clients", many, wall))
        finally:
            proc.terminate()
            proc.wait(10)
    base = statistics.median(sql)
    for name, samples in [("app in-process", app), ("API over HTTP", body), ("API over HTTP + decode", decoded)]:
        print(f"{name} p50 / bare SQL p50 = {statistics.median(samples) / base:.2f}x (goal <= 2x over HTTP)")


def get_body_once(port: int) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    try:
        return get_body(conn)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
