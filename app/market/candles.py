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
from dataclasses import dataclass, field, replace
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


Key = int | str  # a row's field: a list index, or an object key (Bitstamp)


def _no_value(row: Any) -> None:
    return None


@dataclass(frozen=True)
class _Layout:
    """Where one venue's candle row keeps each field; candle() decodes them in Candle order."""

    venue: str
    time: Key
    time_ms: bool
    open: Key
    high: Key
    low: Key
    close: Key
    volume: Key
    volume_quote: Callable[[Any], Decimal | None] = _no_value
    trade_count: Callable[[Any], int | None] = _no_value

    def candle(self, r: Any, symbol: str, interval_sec: int) -> Candle:
        return Candle(
            self.venue,
            symbol,
            interval_sec,
            _ts(r[self.time], self.time_ms),
            _decimal(r[self.open]),
            _decimal(r[self.high]),
            _decimal(r[self.low]),
            _decimal(r[self.close]),
            _decimal(r[self.volume]),
            self.volume_quote(r),
            self.trade_count(r),
            r,
        )

    def collect(self, rows: Any, symbol: str, interval_sec: int) -> ParsedCandles:
        return _collect(rows, lambda r: self.candle(r, symbol, interval_sec), self.venue)


_BINANCE = _Layout(
    "binance", 0, True, 1, 2, 3, 4, 5, lambda r: _opt(r[7]), lambda r: None if r[8] is None else int(r[8])
)
_BYBIT = _Layout("bybit", 0, True, 1, 2, 3, 4, 5, lambda r: _opt(r[6]))
_OKX = _Layout("okx", 0, True, 1, 2, 3, 4, 5)
_COINBASE = _Layout("coinbase", 0, False, 3, 2, 1, 4, 5)
_BITSTAMP = _Layout("bitstamp", "timestamp", False, "open", "high", "low", "close", "volume")
_BITFINEX = _Layout("bitfinex", 0, True, 1, 3, 4, 2, 5)


def parse_binance(body: bytes | str, symbol: str, interval_sec: int) -> ParsedCandles:
    """GET /api/v3/klines: [openTime ms, open, high, low, close, volume, closeTime, quoteVolume, trades, ...]."""
    data = _load(body)
    if isinstance(data, dict):
        raise VenueResponseError(f"binance error: {data.get('code')} {data.get('msg')}")
    return _BINANCE.collect(data, symbol, interval_sec)


def parse_bybit(body: bytes | str, symbol: str, interval_sec: int) -> ParsedCandles:
    """GET /v5/market/kline (spot): result.list of [start ms, o, h, l, c, volume, turnover], newest first."""
    data = _load(body)
    if not isinstance(data, dict) or data.get("retCode") != 0:
        message = data.get("retMsg") if isinstance(data, dict) else data
        raise VenueResponseError(f"bybit error: {message}")
    return _BYBIT.collect(data.get("result", {}).get("list"), symbol, interval_sec)


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
        # The quote volume is decoded first (as before the layouts), so a row's first error stays the same.
        quote = _opt(r[7]) if len(r) > 7 and _opt(r[7]) else _opt(r[6]) if len(r) > 6 else None
        return replace(_OKX.candle(r, symbol, interval_sec), volume_quote=quote or None)

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
    return _COINBASE.collect(data, symbol, interval_sec)


def parse_bitstamp(body: bytes | str, symbol: str, interval_sec: int) -> ParsedCandles:
    """GET /api/v2/ohlc/<pair>/: data.ohlc of {timestamp s, open, high, low, close, volume} (strings)."""
    data = _load(body)
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        raise VenueResponseError(f"bitstamp error: {data}")
    return _BITSTAMP.collect(data["data"].get("ohlc"), symbol, interval_sec)


def parse_bitfinex(body: bytes | str, symbol: str, interval_sec: int) -> ParsedCandles:
    """GET /v2/candles/trade:<tf>:<sym>/hist: [MTS ms, OPEN, CLOSE, HIGH, LOW, VOLUME]."""
    data = _load(body)
    if isinstance(data, list) and data and data[0] == "error":
        raise VenueResponseError(f"bitfinex error: {data}")
    return _BITFINEX.collect(data, symbol, interval_sec)


# One parser per registry venue (tests/test_venue_registry.py checks the keys against the registry).
PARSERS: dict[str, Callable[[bytes | str, str, int], ParsedCandles]] = {
    "binance": parse_binance,
    "bybit": parse_bybit,
    "okx": parse_okx,
    "coinbase": parse_coinbase,
    "bitstamp": parse_bitstamp,
    "bitfinex": parse_bitfinex,
}
