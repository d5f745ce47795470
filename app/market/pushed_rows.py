"""Binance 10m rows from a collector: decoding, then the one SQL writer of venue rows.

Used by the internal ingest route (rows from a remote collector) and by the collector writing locally.
A row is either a bucket with its child candles ("child_candles": the 1m klines; the collector sends
these) or a finished row with its OHLCV (another feeder). Python decodes each row (times, numbers,
counts, the quality fields) and names the row and field of what it cannot decode; the rows then go to
core.write_venue_price_10m, the writer REST child candles go through too: the children into
raw.venue_candles and the bucket's OHLCV by the same aggregate as REST, the OHLCV validity rule
(core.candle_problem; a failing row is SQLSTATE MQ004 naming the row and field, nothing written), the
REST precedence rule, the composer rewind and NOTIFY venue_price_ready.
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
WRITE = "SELECT core.write_venue_price_10m(%s, %s::jsonb)"
INVALID_ROW = "MQ004"  # core.write_venue_price_10m: a row that is not a real trade summary


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
        return Decimal(str(value))  # NaN and Infinity decode; core.candle_problem refuses them
    except InvalidOperation:
        _fail(index, field, f"not a number: {value!r}")


def _count(row: dict, index: int, field: str) -> int | None:
    value = row.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(index, field, f"must be a non-negative integer, got {value!r}")
    return value


def validate_row(row: Any, index: int) -> dict[str, Any]:
    """One pushed row -> the row for core.write_venue_price_10m (its column names), or a PushedRowError
    naming the row and field. Prices and volumes are only decoded here: whether they form a real trade
    summary is core.candle_problem's call when the rows are written."""
    if not isinstance(row, dict):
        raise PushedRowError(f"row {index}: expected an object")
    bucket = _time(row, index, "bucket_start_utc")
    if bucket.timestamp() % 600 != 0:
        _fail(index, "bucket_start_utc", f"{row['bucket_start_utc']} is not aligned to a 10-minute bucket")
    symbol = row.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        _fail(index, "symbol", "missing")
    children = _children(row, index)
    prices = {f: _number(row, index, f, children is None) for f in PRICE_FIELDS}
    volumes = {f: _number(row, index, f, False) for f in ("volume_btc", "volume_usd")}
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
    return {
        "bucket_start_utc": bucket,
        "symbol": symbol,
        **prices,
        **volumes,
        "trade_count": _count(row, index, "trade_count"),
        "raw_payload": row.get("raw_payload"),
        "source_updated_at": _time(row, index, "source_updated_at", False) or last or bucket,
        "quality_status": quality,
        "data_source_mode": mode,
        "expected_child_candle_count": expected,
        "actual_child_candle_count": actual,
        "first_receive_time": first,
        "last_receive_time": last,
        "disconnect_count": _count(row, index, "disconnect_count"),
        "gap_count": _count(row, index, "gap_count"),
        **({} if children is None else {"child_candles": children}),
    }


CHILD_PRICES = ("open", "high", "low", "close")


def _children(row: dict, index: int) -> list[dict[str, Any]] | None:
    """A bucket's child candles (core.write_venue_candles' shape), decoded; None for a finished row."""
    value = row.get("child_candles")
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        _fail(index, "child_candles", "must be a non-empty list of candles")
    decoded = []
    for i, child in enumerate(value):
        name = f"child_candles[{i}]"
        if not isinstance(child, dict):
            _fail(index, name, "expected an object")
        flat = {f"{name}.{key}": v for key, v in child.items()}  # errors name e.g. child_candles[3].open
        interval = child.get("interval_sec", 60)
        if isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0 or 600 % interval:
            _fail(index, f"{name}.interval_sec", f"must divide 600 s, got {interval!r}")
        decoded.append(
            {
                "interval_sec": interval,
                "open_time": _time(flat, index, f"{name}.open_time"),
                **{f: _number(flat, index, f"{name}.{f}", True) for f in CHILD_PRICES},
                "volume_base": _number(flat, index, f"{name}.volume_base", False),
                "volume_quote": _number(flat, index, f"{name}.volume_quote", False),
                "trade_count": _count(flat, index, f"{name}.trade_count"),
                "raw": child.get("raw"),
            }
        )
    return decoded


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)  # exact: the SQL side reads the text as numeric
    raise TypeError(f"cannot encode {type(value).__name__}")


def upsert_rows(conn: psycopg.Connection, rows: list[dict[str, Any]], venue: str = "binance") -> int:
    """Write decoded rows in one transaction through core.write_venue_price_10m (validity, precedence, the
    composer rewind, NOTIFY); replays give identical rows. A row SQL refuses raises PushedRowError with its
    row and field, and nothing is written. Returns the number of rows written."""
    if not rows:
        return 0
    try:
        with conn.transaction():
            (written,) = conn.execute(WRITE, (venue, json.dumps(rows, default=_json))).fetchone()
    except psycopg.Error as exc:
        if exc.sqlstate == INVALID_ROW:
            raise PushedRowError(exc.diag.message_primary) from exc
        raise
    return written
