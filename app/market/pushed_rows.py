"""Finished Binance 10m rows pushed by a collector: validation and the upsert into core.binance_price_10m.

Used by the internal ingest route (rows from a remote collector) and by the collector writing locally.
The local Binance source checkpoint is never moved here: the pushing collector owns its own progress.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

QUALITY_STATUSES = ("complete", "partial", "repaired", "gap")
DATA_SOURCE_MODES = ("websocket", "rest_repair", "websocket_rest_repair", "remote_push", "rest_child_candles")
PRICE_FIELDS = ("open_price_usd", "high_price_usd", "low_price_usd", "close_price_usd")
COLUMNS = (
    "bucket_start_utc",
    "symbol",
    "open_price_usd",
    "high_price_usd",
    "low_price_usd",
    "close_price_usd",
    "volume_btc",
    "volume_usd",
    "trade_count",
    "raw_payload",
    "source_updated_at",
    "quality_status",
    "data_source_mode",
    "expected_child_candle_count",
    "actual_child_candle_count",
    "first_receive_time",
    "last_receive_time",
    "disconnect_count",
    "gap_count",
)
UPSERT = (
    f"INSERT INTO core.binance_price_10m ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    " ON CONFLICT (bucket_start_utc, symbol) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
)


class PushedRowError(ValueError):
    """A pushed 10m row that cannot be stored; the message names the row and the field."""


def _fail(index: int, field: str, problem: str) -> None:
    raise PushedRowError(f"row {index} field {field}: {problem}")


def _time(row: dict, index: int, field: str, required: bool = True) -> datetime | None:
    value = row.get(field)
    if value is None:
        if required:
            _fail(index, field, "missing")
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        _fail(index, field, f"not an ISO time: {value!r}")
    if parsed.tzinfo is None:
        _fail(index, field, "needs a UTC offset")
    return parsed


def _number(row: dict, index: int, field: str, required: bool) -> Decimal | None:
    value = row.get(field)
    if value is None:
        if required:
            _fail(index, field, "missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        _fail(index, field, f"not a number: {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        _fail(index, field, f"not a number: {value!r}")
    if not number.is_finite():
        _fail(index, field, f"not finite: {value!r}")
    return number


def _count(row: dict, index: int, field: str) -> int | None:
    value = row.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(index, field, f"must be a non-negative integer, got {value!r}")
    return value


def validate_row(row: Any, index: int) -> tuple:
    """One pushed row -> the tuple of COLUMNS, or a 422 naming the row and field."""
    if not isinstance(row, dict):
        raise PushedRowError(f"row {index}: expected an object")
    bucket = _time(row, index, "bucket_start_utc")
    if bucket.timestamp() % 600 != 0:
        _fail(index, "bucket_start_utc", f"{row['bucket_start_utc']} is not aligned to a 10-minute bucket")
    symbol = row.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        _fail(index, "symbol", "missing")
    prices = {f: _number(row, index, f, True) for f in PRICE_FIELDS}
    for field, value in prices.items():
        if value <= 0:
            _fail(index, field, f"price must be positive, got {value}")
    o, h, low, c = (prices[f] for f in PRICE_FIELDS)
    if h < max(o, c, low):
        _fail(index, "high_price_usd", f"{h} is below max(open, close, low)")
    if low > min(o, c, h):
        _fail(index, "low_price_usd", f"{low} is above min(open, close, high)")
    volumes = {f: _number(row, index, f, False) for f in ("volume_btc", "volume_usd")}
    for field, value in volumes.items():
        if value is not None and value < 0:
            _fail(index, field, f"must not be negative, got {value}")
    quality = row.get("quality_status")
    if quality not in QUALITY_STATUSES:
        _fail(index, "quality_status", f"must be one of {', '.join(QUALITY_STATUSES)}, got {quality!r}")
    mode = row.get("data_source_mode", "remote_push")
    if mode not in DATA_SOURCE_MODES:
        _fail(index, "data_source_mode", f"must be one of {', '.join(DATA_SOURCE_MODES)}, got {mode!r}")
    expected = _count(row, index, "expected_child_candle_count")
    actual = _count(row, index, "actual_child_candle_count")
    if expected is not None and actual is not None and actual > expected:
        _fail(index, "actual_child_candle_count", f"{actual} is more than expected_child_candle_count {expected}")
    if quality == "complete" and expected is not None and actual != expected:
        _fail(index, "quality_status", "complete needs actual_child_candle_count = expected_child_candle_count")
    first = _time(row, index, "first_receive_time", required=False)
    last = _time(row, index, "last_receive_time", required=False)
    if first and last and last < first:
        _fail(index, "last_receive_time", "is before first_receive_time")
    raw_payload = row.get("raw_payload")
    return (
        bucket,
        symbol,
        o,
        h,
        low,
        c,
        volumes["volume_btc"],
        volumes["volume_usd"],
        _count(row, index, "trade_count"),
        None if raw_payload is None else json.dumps(raw_payload),
        _time(row, index, "source_updated_at", False) or last or bucket,
        quality,
        mode,
        expected,
        actual,
        first,
        last,
        _count(row, index, "disconnect_count"),
        _count(row, index, "gap_count"),
    )


def upsert_rows(conn: psycopg.Connection, values: list[tuple]) -> None:
    """Upsert validated rows in one transaction (replays give identical rows); the canonical composer
    is rewound to the oldest bucket so those buckets are composed again."""
    if not values:
        return
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(UPSERT, values)
        cur.execute(
            "SELECT core.rewind_checkpoints(ARRAY['btc\\_price\\_canonical\\_composer'], %s)",
            (min(v[0] for v in values),),
        )
        cur.execute("SELECT pg_notify('venue_price_ready', %s)", (f'{{"venue": "binance", "rows": {len(values)}}}',))
