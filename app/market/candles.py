"""Venue OHLCV responses -> validated child candles (the rows of raw.venue_candles).

One parser per venue, each aware of that venue's field order (Coinbase Exchange: [time, low, high, open,
close, volume]; Bitfinex: [time, open, close, high, low, volume]; Bybit and OKX newest first). Numbers
are decoded as Decimal from the response text, never through float; a row that cannot be decoded (missing
fields, not a number, NaN/Infinity, a fractional second) is rejected with a reason; duplicates keep the
last one seen; the result is ordered by open time. Whether a decoded candle is a real trade summary is
decided in SQL when it is written (core.candle_problem through core.write_venue_candles, the one rule).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

log = logging.getLogger(__name__)


class VenueResponseError(ValueError):
    """A response that is not the venue's candle shape at all (error body, truncated JSON)."""


@dataclass(frozen=True)
class Candle:
    """One child candle as the venue reported it, prices in the quote currency (USD or USDT)."""

    venue: str
    symbol: str
    interval_sec: int
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume_base: Decimal | None
    volume_quote: Decimal | None
    trade_count: int | None
    raw: Any = field(compare=False, repr=False)


@dataclass
class ParsedCandles:
    candles: list[Candle]
    rejected: list[tuple[Any, str]]


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return number


def _load(body: bytes | str) -> Any:
    try:
        return json.loads(body, parse_float=Decimal, parse_int=Decimal)
    except ValueError as exc:
        raise VenueResponseError(f"response is not JSON ({exc})") from exc


def _ts(value: Any, unit_ms: bool) -> datetime:
    seconds = _decimal(value) / (1000 if unit_ms else 1)
    if seconds != seconds.to_integral_value():
        raise ValueError(f"timestamp {value!r} is not on a whole second")
    return datetime.fromtimestamp(int(seconds), UTC)


def _collect(rows: Any, build: Callable[[Any], Candle], venue: str) -> ParsedCandles:
    if not isinstance(rows, list):
        raise VenueResponseError(f"{venue}: expected a list of candles, got {type(rows).__name__}")
    by_time: dict[datetime, Candle] = {}
    rejected: list[tuple[Any, str]] = []
    for row in rows:
        try:
            candle = build(row)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            rejected.append((row, f"malformed candle: {exc}"))
            continue
        by_time[candle.open_time] = candle  # a duplicate open time: the later one wins
    for row, reason in rejected:
        log.warning("%s: rejected candle %s: %s", venue, json.dumps(row, default=str)[:200], reason)
    return ParsedCandles([by_time[t] for t in sorted(by_time)], rejected)


def _opt(value: Any) -> Decimal | None:
    return None if value is None or value == "" else _decimal(value)


def parse_binance(body: bytes | str, symbol: str, interval_sec: int) -> ParsedCandles:
    """GET /api/v3/klines: [openTime ms, open, high, low, close, volume, closeTime, quoteVolume, trades, ...]."""
    data = _load(body)
    if isinstance(data, dict):
        raise VenueResponseError(f"binance error: {data.get('code')} {data.get('msg')}")
    return _collect(
        data,
        lambda r: Candle(
            "binance",
            symbol,
            interval_sec,
            _ts(r[0], True),
            _decimal(r[1]),
            _decimal(r[2]),
            _decimal(r[3]),
            _decimal(r[4]),
            _decimal(r[5]),
            _opt(r[7]),
            None if r[8] is None else int(r[8]),
            r,
        ),
        "binance",
    )


def parse_bybit(body: bytes | str, symbol: str, interval_sec: int) -> ParsedCandles:
    """GET /v5/market/kline (spot): result.list of [start ms, o, h, l, c, volume, turnover], newest first."""
    data = _load(body)
    if not isinstance(data, dict) or data.get("retCode") != 0:
        message = data.get("retMsg") if isinstance(data, dict) else data
        raise VenueResponseError(f"bybit error: {message}")
    return _collect(
        data.get("result", {}).get("list"),
        lambda r: Candle(
            "bybit",
            symbol,
            interval_sec,
            _ts(r[0], True),
            _decimal(r[1]),
            _decimal(r[2]),
            _decimal(r[3]),
            _decimal(r[4]),
            _decimal(r[5]),
            _opt(r[6]),
            None,
            r,
        ),
        "bybit",
    )


def parse_okx(body: bytes | str, symbol: str, interval_sec: int) -> ParsedCandles:
    """GET /api/v5/market/(history-)candles: data of [ts ms, o, h, l, c, vol, volCcy, volCcyQuote, confirm].

    Spot: vol is in the base currency (BTC), volCcyQuote (else volCcy) in the quote currency. An unconfirmed
    candle (confirm = "0" in the current form) is still forming and is skipped.
    """
    data = _load(body)
    if not isinstance(data, dict) or str(data.get("code")) != "0":
        message = data.get("msg") if isinstance(data, dict) else data
        raise VenueResponseError(f"okx error: {message}")
    rows = data.get("data")
    if isinstance(rows, list):
        rows = [r for r in rows if not _okx_unconfirmed(r)]

    def build(r: list) -> Candle:
        quote = _opt(r[7]) if len(r) > 7 and _opt(r[7]) else _opt(r[6]) if len(r) > 6 else None
        return Candle(
            "okx",
            symbol,
            interval_sec,
            _ts(r[0], True),
            _decimal(r[1]),
            _decimal(r[2]),
            _decimal(r[3]),
            _decimal(r[4]),
            _decimal(r[5]),
            quote or None,
            None,
            r,
        )

    return _collect(rows, build, "okx")


def _okx_unconfirmed(row: Any) -> bool:
    # The 2021 form zero-filled volCcy, volCcyQuote and the last field; only the current form's
    # confirm = "0" means "still forming".
    if not isinstance(row, list) or len(row) < 9:
        return False
    legacy_zero_filled = row[6] == "0" and row[7] == "0"
    return row[8] == "0" and not legacy_zero_filled


def parse_coinbase(body: bytes | str, symbol: str, interval_sec: int) -> ParsedCandles:
    """Coinbase Exchange GET /products/<id>/candles: [time s, LOW, HIGH, OPEN, CLOSE, volume], newest first."""
    data = _load(body)
    if isinstance(data, dict):
        raise VenueResponseError(f"coinbase error: {data.get('message')}")
    return _collect(
        data,
        lambda r: Candle(
            "coinbase",
            symbol,
            interval_sec,
            _ts(r[0], False),
            _decimal(r[3]),
            _decimal(r[2]),
            _decimal(r[1]),
            _decimal(r[4]),
            _decimal(r[5]),
            None,
            None,
            r,
        ),
        "coinbase",
    )


def parse_bitstamp(body: bytes | str, symbol: str, interval_sec: int) -> ParsedCandles:
    """GET /api/v2/ohlc/<pair>/: data.ohlc of {timestamp s, open, high, low, close, volume} (strings)."""
    data = _load(body)
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise VenueResponseError(f"bitstamp error: {data}")
    return _collect(
        data["data"].get("ohlc"),
        lambda r: Candle(
            "bitstamp",
            symbol,
            interval_sec,
            _ts(r["timestamp"], False),
            _decimal(r["open"]),
            _decimal(r["high"]),
            _decimal(r["low"]),
            _decimal(r["close"]),
            _decimal(r["volume"]),
            None,
            None,
            r,
        ),
        "bitstamp",
    )


def parse_bitfinex(body: bytes | str, symbol: str, interval_sec: int) -> ParsedCandles:
    """GET /v2/candles/trade:<tf>:<sym>/hist: [MTS ms, OPEN, CLOSE, HIGH, LOW, VOLUME]."""
    data = _load(body)
    if isinstance(data, list) and data and data[0] == "error":
        raise VenueResponseError(f"bitfinex error: {data}")
    return _collect(
        data,
        lambda r: Candle(
            "bitfinex",
            symbol,
            interval_sec,
            _ts(r[0], True),
            _decimal(r[1]),
            _decimal(r[3]),
            _decimal(r[4]),
            _decimal(r[2]),
            _decimal(r[5]),
            None,
            None,
            r,
        ),
        "bitfinex",
    )


# One parser per registry venue (tests/test_venue_registry.py checks the keys against the registry).
PARSERS: dict[str, Callable[[bytes | str, str, int], ParsedCandles]] = {
    "binance": parse_binance,
    "bybit": parse_bybit,
    "okx": parse_okx,
    "coinbase": parse_coinbase,
    "bitstamp": parse_bitstamp,
    "bitfinex": parse_bitfinex,
}
