"""The read API through Litestar's test client on a database where every stage has run (tests/pipeline.py),
on both engines: rows equal the api views', paging by cursor, CSV, errors, OpenAPI, and the read-only role."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
from typing import Any

import msgspec
import psycopg
import pytest
from litestar.testing import TestClient
from psycopg import errors
from psycopg.types.string import TextLoader

from app.api.app import create_app
from app.api.database import open_read_connection
from tests.conftest import free_port
from tests.pipeline import populate

SERIES_ROUTES = {
    "primitive": "/api/v1/btc/primitive",
    "canonical": "/api/v1/btc/price/canonical",
    "okx": "/api/v1/btc/price/venues/okx",
    "nvt": "/api/v1/btc/metrics/nvt_raw",
}
FIRST_TWO_HOURS = {"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T02:00:00Z"}  # 12 buckets of 10m


@pytest.fixture
def populated(db_url) -> str:
    populate(db_url)
    return db_url


@pytest.fixture
def client(populated) -> TestClient:
    with TestClient(app=create_app(populated, None)) as test_client:
        yield test_client


@pytest.fixture
def empty_client(db_url) -> TestClient:
    with TestClient(app=create_app(db_url, None)) as test_client:
        yield test_client


def view_items(url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    """Rows of a direct SELECT as the owner, spelled as the API promises: numeric as PostgreSQL's own text,
    times ISO 8601 UTC, jsonb and arrays as JSON."""
    with psycopg.connect(url) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.adapters.register_loader("numeric", TextLoader)
        cur = conn.execute(query, params)
        columns = [c.name for c in cur.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    return json.loads(msgspec.json.encode(rows))


def items(client: TestClient, route: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(route, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items", "next_cursor"}
    return body["items"]


def walk(client: TestClient, route: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Follow next_cursor to the end; the rows of every page, and the number of pages."""
    rows, pages, cursor = [], 0, None
    while True:
        response = client.get(route, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return rows, pages
        assert len(body["items"]) == params["limit"]  # only a full page can have a next one


def test_primitive_known_bucket_exact_values(client):
    # Block 1: header time 00:09, median time 00:06 -> bucket 00:00. Fees 100 + 107 + 114 = 321 sat.
    # Canonical price of bucket 0: bitstamp, coinbase (open 40000, close 40005) and okx (1% higher), volume 1
    # each, so open = (40000 + 40000 + 40400) / 3 and close = (40005 + 40005 + 40405.05) / 3.
    (row,) = items(client, "/api/v1/btc/primitive", start="2024-01-01T00:00:00Z", end="2024-01-01T00:10:00Z")
    assert row["bucket_start_utc"] == "2024-01-01T00:00:00Z"
    assert row["block_count"] == 1 and row["fees_sat_10m"] == 321 and row["tx_count_10m"] == 4
    assert row["supply_total_sat"] == 5_000_000_000  # JSON integers for bigint: the genesis coinbase is not supply
    assert row["transferred_btc_10m"] == "3.00003000"  # numeric(24,8) as an exact string
    assert row["tx_rate_per_sec_10m"] == "0.00666667"
    assert row["open_price_usd"] == "40133.33333333" and row["close_price_usd"] == "40138.35000000"
    assert row["market_cap_usd"] == "2006917.50000000"  # 50 BTC x close
    assert row["block_interval_mean_sec_10m"] is None  # one block: no interval, NULL not 0
    assert row["chainwork_last"] == "0000000000000000000000000000000000000000000000000000000000000002"


@pytest.mark.parametrize("interval", ["10m", "1h", "24h"])
def test_series_equal_their_views(client, populated, interval):
    for route, view in [
        ("/api/v1/btc/primitive", f"btc_primitive_{interval}"),
        ("/api/v1/btc/price/canonical", f"btc_price_canonical_{interval}"),
    ]:
        expected = view_items(populated, f"SELECT * FROM api.{view} ORDER BY bucket_start_utc")
        assert expected and items(client, route, interval=interval, limit=10000) == expected
    # Every registered metric, by metric_name and by its table stem.
    for metric, stem in [
        ("market_cap_usd", "market_cap"),
        ("nvt_raw", "nvt"),
        ("miner_revenue", "miner_revenue"),
        ("fee_metrics", "fee_metrics"),
        ("hash_rate", "hash_rate"),
    ]:
        expected = view_items(populated, f"SELECT * FROM api.btc_{stem}_{interval} ORDER BY bucket_start_utc")
        assert expected, metric
        assert items(client, f"/api/v1/btc/metrics/{metric}", interval=interval, limit=10000) == expected
        assert items(client, f"/api/v1/btc/metrics/{stem}", interval=interval, limit=10000) == expected


def test_canonical_gap_and_venue_rows(client, populated):
    # Bucket 5 has no venue row at all: NULL prices and source_count 0, never 0 prices.
    (gap,) = items(client, "/api/v1/btc/price/canonical", start="2024-01-01T00:50:00Z", end="2024-01-01T01:00:00Z")
    assert gap["source_count"] == 0 and gap["close_price_usd"] is None and gap["source_names"] == []
    (both,) = items(client, "/api/v1/btc/price/canonical", start="2024-01-01T00:00:00Z", end="2024-01-01T00:10:00Z")
    assert both["source_names"] == ["bitstamp", "coinbase", "okx"] and both["volume_btc"] == "3"
    for venue in ("bitstamp", "coinbase", "okx", "binance"):
        expected = view_items(
            populated, "SELECT * FROM api.btc_price_venue_10m WHERE venue = %s ORDER BY bucket_start_utc", (venue,)
        )
        got = items(client, f"/api/v1/btc/price/venues/{venue}", limit=10000)
        assert got == expected and {r["venue"] for r in got} <= {venue}
    okx = items(client, "/api/v1/btc/price/venues/okx", limit=2)
    # okx reports every third bucket, 1% above the others: open 40000 x 1.01, volume 1 + n % 4 BTC.
    assert [(r["bucket_start_utc"], r["open_price_usd"], r["volume_btc"]) for r in okx] == [
        ("2024-01-01T00:00:00Z", "40400", "1"),
        ("2024-01-01T00:30:00Z", "40430.3", "4"),
    ]
    assert items(client, "/api/v1/btc/price/venues/bybit") == []  # a known venue without rows: empty, not 404


def test_start_inclusive_end_exclusive(client):
    def starts(**params):
        return [r["bucket_start_utc"] for r in items(client, "/api/v1/btc/primitive", **params)]

    assert starts(start="2024-01-01T01:00:00Z", end="2024-01-01T01:30:00Z") == [
        "2024-01-01T01:00:00Z",
        "2024-01-01T01:10:00Z",
        "2024-01-01T01:20:00Z",
    ]
    # The same range with an offset, and without one (taken as UTC).
    assert starts(start="2024-01-01T02:00:00+01:00", end="2024-01-01T02:30:00+01:00") == starts(
        start="2024-01-01T01:00:00", end="2024-01-01T01:30:00"
    )
    assert starts(start="2024-01-03T02:50:00Z") == ["2024-01-03T02:50:00Z"]  # the last bucket
    assert starts(end="2024-01-01T00:10:00Z") == ["2024-01-01T00:00:00Z"]
    assert starts(start="2030-01-01T00:00:00Z") == []
    hours = items(
        client, "/api/v1/btc/primitive", interval="1h", start="2024-01-02T00:00:00Z", end="2024-01-02T03:00:00Z"
    )
    assert [r["bucket_start_utc"] for r in hours] == [
        "2024-01-02T00:00:00Z",
        "2024-01-02T01:00:00Z",
        "2024-01-02T02:00:00Z",
    ]


@pytest.mark.parametrize("route", list(SERIES_ROUTES.values()))
def test_cursor_walks_every_page(client, route):
    whole = items(client, route, limit=10000)
    assert len(whole) > 20
    for limit in (7, len(whole), len(whole) - 1):
        rows, pages = walk(client, route, limit=limit)
        assert rows == whole and pages == -(-len(whole) // limit)
    rows, _ = walk(client, route, limit=9, order="desc")
    assert rows == whole[::-1]
    # With a range: 12 buckets in pages of 4 is exactly 3 pages, the third one says it is the last.
    ranged = items(client, route, limit=10000, **FIRST_TWO_HOURS)
    rows, pages = walk(client, route, limit=4, **FIRST_TWO_HOURS)
    assert rows == ranged and pages == max(1, -(-len(ranged) // 4))
    assert client.get(route, params={"limit": 10000}).json()["next_cursor"] is None


def test_csv_is_the_same_rows(client, populated):
    route = "/api/v1/btc/primitive"
    page = client.get(route, params={"limit": 5, **FIRST_TWO_HOURS}).json()
    response = client.get(route, params={"limit": 5, "format": "csv", **FIRST_TWO_HOURS})
    assert response.status_code == 200 and response.headers["content-type"] == "text/csv; charset=utf-8"
    header, *rows = list(csv.reader(io.StringIO(response.text)))
    columns = view_items(populated, "SELECT * FROM api.btc_primitive_10m LIMIT 1")[0].keys()
    assert header == list(columns)
    assert [dict(zip(header, row, strict=True)) for row in rows] == [csv_spelling(item) for item in page["items"]]
    assert rows[0][header.index("transferred_btc_10m")] == "3.00003000"  # exact, as in JSON
    # The next cursor travels in X-Next-Cursor; following it gives the JSON next page; none on the last page.
    cursor = response.headers["x-next-cursor"]
    assert cursor == page["next_cursor"]
    following = client.get(route, params={"limit": 5, "cursor": cursor, **FIRST_TWO_HOURS}).json()
    assert following["items"] == items(client, route, start="2024-01-01T00:50:00Z", end="2024-01-01T01:40:00Z")
    last = client.get(route, params={"limit": 50, "format": "csv", **FIRST_TWO_HOURS})
    assert "x-next-cursor" not in last.headers and len(last.text.strip().splitlines()) == 13
    # jsonb and arrays are JSON in a cell; NULL is empty.
    canonical = client.get("/api/v1/btc/price/canonical", params={"format": "csv", "limit": 6})
    header, *rows = list(csv.reader(io.StringIO(canonical.text)))
    gap = dict(zip(header, rows[5], strict=True))
    assert (
        gap["source_names"] == "[]" and gap["close_price_usd"] == "" and json.loads(gap["excluded_sources"]) is not None
    )


def csv_spelling(item: dict[str, Any]) -> dict[str, str]:
    def cell(value):
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"))
        return str(value)

    return {key: cell(value) for key, value in item.items()}


def test_registries_checkpoints_and_health(client, populated):
    for route, query in [
        ("/api/v1/registry/metrics", 'SELECT * FROM api.metric_registry ORDER BY metric_name, "interval"'),
        (
            "/api/v1/registry/price-sources",
            "SELECT * FROM api.price_source_registry ORDER BY priority_rank, source_name",
        ),
        ("/api/v1/checkpoints", 'SELECT * FROM api.checkpoints ORDER BY chain, component, "interval"'),
    ]:
        body = client.get(route).json()
        assert body["next_cursor"] is None and body["items"] == view_items(populated, query) and body["items"]
    # 5 metrics x 3 intervals, and the coin-age ones: 3 x 3 intervals + 2 daily
    assert len(client.get("/api/v1/registry/metrics").json()["items"]) == 15 + 11

    health = client.get("/api/v1/btc/health").json()
    (expected,) = view_items(populated, "SELECT * FROM api.btc_health")
    assert health.keys() == expected.keys()
    # Against the wall clock, or changed by TimescaleDB's scheduler finishing a job between the two reads.
    jobs = ("timescaledb_jobs_failing", "timescaledb_jobs_stale", "timescaledb_job_problems")
    for moving in ("primitive_lag_sec", *jobs):
        health.pop(moving), expected.pop(moving)
    assert health == expected
    assert health["last_raw_height"] == 340 and health["node_tip"] is None and health["status"] == "ok"
    assert health["last_primitive_bucket"] == "2024-01-03T02:50:00Z" and health["checkpoints_in_error"] == []
    assert client.get("/health").json() == {"status": "ok"}


def test_health_503_when_the_database_is_unreachable():
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    with TestClient(app=create_app(url, None)) as down:
        for route in ("/health", "/api/v1/btc/health", "/api/v1/btc/primitive"):
            response = down.get(route)
            assert response.status_code == 503 and "database unavailable" in response.json()["detail"], route


def test_a_cursor_continues_only_its_own_listing(client):
    route = "/api/v1/btc/primitive"
    cursor = client.get(route, params={"limit": 3}).json()["next_cursor"]
    for other, params, says in [
        ("/api/v1/btc/primitive", {"interval": "1h"}, "btc_primitive_10m"),
        ("/api/v1/btc/price/venues/okx", {}, "btc_primitive_10m"),
        ("/api/v1/btc/primitive", {"order": "desc"}, "order=asc"),
    ]:
        response = client.get(other, params={**params, "cursor": cursor})
        assert response.status_code == 400 and "cursor" in response.json()["detail"] and says in response.text
    okx = client.get("/api/v1/btc/price/venues/okx", params={"limit": 2}).json()["next_cursor"]
    assert client.get("/api/v1/btc/price/venues/bitstamp", params={"cursor": okx}).status_code == 400


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"interval": "5m"}, "interval"),
        ({"interval": ""}, "interval"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2024-13-01T00:00:00Z"}, "end"),
        ({"start": "0001-01-01T00:00:00+01:00"}, "start"),  # before year 1 in UTC
        ({"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"}, "start"),
        ({"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}, "start"),
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJzIjoxfQ"}, "cursor"),  # base64 of {"s":1}
        ({"cursor": "x" * 600}, "cursor"),
        ({"order": "up"}, "order"),
        ({"format": "xml"}, "format"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(empty_client, params, named):
    for route in SERIES_ROUTES.values():
        response = empty_client.get(route, params=params)
        assert response.status_code == 400, (route, response.text)
        assert named in response.json()["detail"], (route, response.text)


def test_not_found(client, populated):
    response = client.get("/api/v1/btc/price/venues/kraken")
    assert response.status_code == 404 and "unknown venue 'kraken'" in response.json()["detail"]
    assert "bitstamp, coinbase, bybit, binance, okx, bitfinex" in response.json()["detail"]
    response = client.get("/api/v1/btc/metrics/thermocap")
    assert response.status_code == 404 and "unknown metric 'thermocap'" in response.json()["detail"]
    with psycopg.connect(populated) as conn:
        conn.execute("DELETE FROM core.metric_registry WHERE metric_name = 'hash_rate' AND \"interval\" = '1h'")
    response = client.get("/api/v1/btc/metrics/hash_rate", params={"interval": "1h"})
    assert response.status_code == 404 and "its intervals: 10m, 24h" in response.json()["detail"]
    assert client.get("/api/v1/btc/metrics/hash_rate", params={"interval": "24h"}).status_code == 200
    assert client.get("/api/v1/btc/nothing").status_code == 404


@pytest.mark.parametrize(
    "output_table",
    [
        "sync_checkpoints",  # a core table (the reader could not read it anyway)
        "core.sync_checkpoints",
        'btc_nvt_10m"; DELETE FROM core.sync_checkpoints; --',
        "btc_nvt_10m' OR '1'='1",
        "lane_status",  # an api view, but not a time series
        "pg_roles",
    ],
)
def test_metrics_route_reads_only_api_series_views(empty_client, db_url, output_table):
    with psycopg.connect(db_url) as conn:
        conn.execute(
            'INSERT INTO core.metric_registry (metric_name, factor, "interval", sql_function, output_table)'
            " VALUES ('trick', 'test', '10m', 'core.metric_trick', %s)",
            (output_table,),
        )
        conn.execute("SELECT core.set_checkpoint('btc', 'canary', '10m', 1, NULL)")
    response = empty_client.get("/api/v1/btc/metrics/trick")
    assert response.status_code == 404, response.text
    assert "not a readable time-series view in schema api" in response.json()["detail"]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM core.sync_checkpoints").fetchone()[0] == 1


def test_openapi_lists_every_route(empty_client):
    doc = empty_client.get("/schema/openapi.json").json()
    assert {(path, method) for path, item in doc["paths"].items() for method in item} == {
        ("/health", "get"),
        ("/api/v1/btc/health", "get"),
        ("/api/v1/btc/primitive", "get"),
        ("/api/v1/btc/utxo/blocks", "get"),
        ("/api/v1/btc/utxo/coverage", "get"),
        ("/api/v1/btc/price/canonical", "get"),
        ("/api/v1/btc/price/venues/{venue}", "get"),
        ("/api/v1/btc/metrics/{metric}", "get"),
        ("/api/v1/registry/metrics", "get"),
        ("/api/v1/registry/price-sources", "get"),
        ("/api/v1/checkpoints", "get"),
        ("/api/v1/timescaledb/jobs", "get"),
        ("/api/v1/internal/price/source/binance/10m", "post"),
    }
    paging = {"start", "end", "limit", "cursor", "order", "format"}
    for path in SERIES_ROUTES.values():
        template = path.replace("okx", "{venue}").replace("nvt_raw", "{metric}")
        operation = doc["paths"][template]["get"]
        assert paging <= {p["name"] for p in operation["parameters"]}
        ok = operation["responses"]["200"]
        assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Page"}
        assert "text/csv" in ok["content"] and "X-Next-Cursor" in ok["headers"]
        assert "400" in operation["responses"]
    # The per-block route pages by height with the same other parameters and the same answers.
    operation = doc["paths"]["/api/v1/btc/utxo/blocks"]["get"]
    assert {p["name"] for p in operation["parameters"]} == paging - {"start", "end"} | {"start_height", "end_height"}
    ok = operation["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Page"}
    assert "text/csv" in ok["content"] and "X-Next-Cursor" in ok["headers"] and "400" in operation["responses"]
    coverage = doc["components"]["schemas"]["CoinAgeCoverage"]["properties"]
    assert {"type": "integer"} in coverage["state_complete_from_height"]["oneOf"]
    page = doc["components"]["schemas"]["Page"]
    assert set(page["required"]) == {"items", "next_cursor"}
    health = doc["components"]["schemas"]["BtcHealth"]["properties"]
    assert {"type": "integer"} in health["last_raw_height"]["oneOf"]


# The read-only role: every write through the API's own connection fails.
WRITES = [
    "INSERT INTO core.sync_checkpoints (chain, component, \"interval\") VALUES ('btc', 'x', '10m')",
    "UPDATE core.sync_checkpoints SET status = 'ok'",
    "DELETE FROM core.btc_primitive_10m",
    "INSERT INTO api.checkpoints (chain, component, \"interval\") VALUES ('btc', 'x', '10m')",
    "UPDATE api.btc_primitive_10m SET block_count = 0",
    "DELETE FROM api.btc_nvt_10m",
    "TRUNCATE core.sync_checkpoints",
    "CREATE TABLE api.planted (x int)",
]


async def assert_reader_cannot_write(conn: psycopg.AsyncConnection) -> None:
    assert await one(conn, "SELECT current_user") == "mqnode_reader"
    assert await one(conn, "SHOW default_transaction_read_only") == "on"
    for statement in WRITES:
        # The session is read-only AND the role lacks the privilege; which one PostgreSQL reports first
        # depends on its version, so check both layers: as opened, then with read-only lifted.
        with pytest.raises((errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)):
            await conn.execute(statement)
        with pytest.raises(errors.InsufficientPrivilege):
            async with conn.transaction():
                await conn.execute("SET TRANSACTION READ WRITE")
                await conn.execute(statement)
    with pytest.raises(errors.InsufficientPrivilege):
        await conn.execute("SELECT * FROM core.btc_primitive_10m LIMIT 1")  # core is not readable either
    assert await one(conn, "SELECT count(*) FROM api.btc_primitive_10m") >= 0


async def one(conn: psycopg.AsyncConnection, query: str) -> Any:
    cur = await conn.execute(query)
    return (await cur.fetchone())[0]


def on_api_connection(url: str, check) -> Any:
    """Run `check` on a connection from the function the API opens its connections with."""

    async def run():
        async with await open_read_connection(url) as conn:
            return await check(conn)

    return asyncio.run(run())


def test_api_connection_is_read_only(db_url):
    on_api_connection(db_url, assert_reader_cannot_write)


def test_api_connection_spells_numerics_as_postgresql(db_url):
    async def check(conn):
        cur = await conn.execute("SELECT 0.00000001::numeric, 'NaN'::numeric, 1e20::numeric, ARRAY[1.50, 2]::numeric[]")
        return await cur.fetchone()

    row = on_api_connection(db_url, check)
    assert row == ("0.00000001", "NaN", "100000000000000000000", ["1.50", "2"])  # never 1E-8 or a float


def test_api_login_role_url(server_url):
    """MQNODE_API_DATABASE_URL: a login role that is a member of mqnode_reader (PostgreSQL; roles are per cluster)."""
    role = f"mqnode_api_test_{os.getpid()}"
    login_url = server_url.replace("postgresql://postgres@", f"postgresql://{role}@")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN IN ROLE mqnode_reader')
    try:
        populate(server_url)

        async def check(conn):
            assert await one(conn, "SELECT session_user") == role
            await assert_reader_cannot_write(conn)

        on_api_connection(login_url, check)
        with TestClient(app=create_app(server_url, None, read_database_url=login_url)) as client:
            assert len(items(client, "/api/v1/btc/primitive", **FIRST_TWO_HOURS)) == 12
            assert client.get("/health").json() == {"status": "ok"}
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            conn.execute(f'DROP ROLE "{role}"')


def test_login_outside_the_reader_role_is_a_logged_500(server_url):
    """A MQNODE_API_DATABASE_URL login that is not a member of mqnode_reader cannot SET ROLE: 500, and the log
    says why (the API never falls back to reading with the login's own privileges)."""
    role = f"mqnode_api_outsider_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append  # Litestar's logging set-up replaces the root handlers (and caplog's)
    logging.getLogger("mqnode.api").addHandler(handler)
    try:
        login_url = server_url.replace("postgresql://postgres@", f"postgresql://{role}@")
        with TestClient(app=create_app(server_url, None, read_database_url=login_url)) as client:
            response = client.get("/api/v1/btc/primitive")
        assert response.status_code == 500 and response.json()["detail"] == "database error (see the server log)"
        assert any('permission denied to set role "mqnode_reader"' in r.getMessage() for r in logged)
    finally:
        logging.getLogger("mqnode.api").removeHandler(handler)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP ROLE "{role}"')


def test_kept_connection_replaced_after_it_dies(server_url):
    """PostgreSQL keeps idle read connections; one killed under it (server restart) is replaced, not a 5xx."""
    populate(server_url)
    with TestClient(app=create_app(server_url, None)) as client:
        assert len(items(client, "/api/v1/btc/primitive", **FIRST_TWO_HOURS)) == 12
        with psycopg.connect(server_url, autocommit=True) as conn:
            (killed,) = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'mqnode-api' AND datname = current_database()"
            ).fetchone()
        assert killed == 1
        assert len(items(client, "/api/v1/btc/primitive", **FIRST_TWO_HOURS)) == 12


def test_ingested_rows_are_readable_and_the_reader_stays_read_only(db_url):
    """The write route and the reads share the app (and the PGlite engine's single connection)."""
    from tests.test_internal_ingest import row as ingest_row

    token = "t0ken"
    with TestClient(app=create_app(db_url, token)) as client:
        row = ingest_row()  # the internal route's tests' row: 00:10, open 42000.10, 1200 trades
        posted = client.post(
            "/api/v1/internal/price/source/binance/10m",
            json={"rows": [row]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert posted.status_code == 200, posted.text
        (got,) = items(client, "/api/v1/btc/price/venues/binance")
        assert got["open_price_usd"] == "42000.10" and got["trade_count"] == 1200 and got["venue"] == "binance"
