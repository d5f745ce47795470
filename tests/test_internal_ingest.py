"""The internal Binance 10m ingest route through Litestar's test client on a real database (both engines)."""

from __future__ import annotations

import json
from decimal import Decimal as D

import psycopg
import pytest
from litestar.testing import TestClient

from app.api.app import create_app

TOKEN = "s3cret-token"
ROUTE = "/api/v1/internal/price/source/binance/10m"


def row(bucket="2024-01-01T00:10:00Z", **overrides):
    base = {
        "bucket_start_utc": bucket,
        "symbol": "BTCUSDT",
        "open_price_usd": "42000.10",
        "high_price_usd": "42100",
        "low_price_usd": "41950.5",
        "close_price_usd": "42050",
        "volume_btc": "12.5",
        "volume_usd": "525000.25",
        "trade_count": 1200,
        "quality_status": "complete",
        "data_source_mode": "websocket",
        "expected_child_candle_count": 10,
        "actual_child_candle_count": 10,
        "first_receive_time": "2024-01-01T00:11:00.120Z",
        "last_receive_time": "2024-01-01T00:20:00.350Z",
        "disconnect_count": 0,
        "gap_count": 0,
        "raw_payload": {"klines": 10},
    }
    base.update(overrides)
    return base


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def stored(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT bucket_start_utc, symbol, open_price_usd, high_price_usd, low_price_usd, close_price_usd,"
            " volume_btc, quality_status, data_source_mode, actual_child_candle_count FROM core.binance_price_10m"
            " ORDER BY 1"
        ).fetchall()


def checkpoints(url):
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM core.sync_checkpoints").fetchone()[0]


@pytest.fixture
def client(db_url):
    with TestClient(app=create_app(db_url, TOKEN, max_rows=3)) as test_client:
        yield test_client


def test_valid_rows_and_idempotent_replay(client, db_url):
    body = {"rows": [row(), row("2024-01-01T00:20:00Z", close_price_usd="42001")]}
    first = client.post(ROUTE, json=body, headers=auth())
    assert first.status_code == 200 and first.json() == {"accepted": 2, "table": "binance_price_10m"}
    rows = stored(db_url)
    assert client.post(ROUTE, json=body, headers=auth()).status_code == 200
    assert stored(db_url) == rows and len(rows) == 2
    assert rows[0][2:] == (D("42000.10"), D("42100"), D("41950.5"), D("42050"), D("12.5"), "complete", "websocket", 10)
    assert checkpoints(db_url) == 0  # the local Binance checkpoint is not moved by pushes


@pytest.mark.parametrize(
    ("headers", "status"), [({}, 401), ({"Authorization": "Basic abc"}, 401), (auth("wrong"), 403)]
)
def test_token_is_required(client, db_url, headers, status):
    assert client.post(ROUTE, json={"rows": [row()]}, headers=headers).status_code == status
    assert stored(db_url) == []


def test_no_token_configured_refuses_everything(db_url):
    with TestClient(app=create_app(db_url, None)) as unconfigured:
        response = unconfigured.post(ROUTE, json={"rows": [row()]}, headers=auth())
    assert response.status_code == 503 and "MQNODE_INTERNAL_INGEST_TOKEN" in response.text
    assert stored(db_url) == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not JSON"),
        (json.dumps({"data": []}).encode(), 400, "body must be"),
        (json.dumps({"rows": [row()] * 4}).encode(), 413, "at most 3"),
        (json.dumps({"rows": [row(), row("2024-01-01T00:15:00Z")]}).encode(), 422, "row 1 field bucket_start_utc"),
        (json.dumps({"rows": [row(high_price_usd="41000")]}).encode(), 422, "row 0 field high_price_usd"),
        (json.dumps({"rows": [row(open_price_usd="-1")]}).encode(), 422, "row 0 field open_price_usd"),
        (json.dumps({"rows": [row(close_price_usd="NaN")]}).encode(), 422, "row 0 field close_price_usd"),
        (json.dumps({"rows": [row(quality_status="great")]}).encode(), 422, "row 0 field quality_status"),
        (json.dumps({"rows": [row(actual_child_candle_count=11)]}).encode(), 422, "actual_child_candle_count"),
    ],
)
def test_bad_payloads_write_nothing(client, db_url, body, status, message):
    response = client.post(ROUTE, content=body, headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == status and message in response.text, response.text
    assert stored(db_url) == []


def test_oversize_body(client, db_url):
    huge = json.dumps({"rows": [row(raw_payload="x" * (9 * 1024 * 1024))]}).encode()
    response = client.post(ROUTE, content=huge, headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 413 and stored(db_url) == []
