"""Each venue's parser on real recorded responses (tests/fixtures/exchanges) gives the exact OHLCV."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from app.market.candles import PARSERS, VenueResponseError, parse_binance, parse_coinbase
from tests.conftest import FIXTURES

EX = FIXTURES / "exchanges"


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def fields(c):
    return (c.open_time, c.open, c.high, c.low, c.close, c.volume_base, c.volume_quote, c.trade_count)


def test_binance_klines():
    parsed = parse_binance((EX / "binance" / "api_v3_klines_BTCUSDT_1m_nautilus.json").read_bytes(), "BTCUSDT", 60)
    assert parsed.rejected == [] and len(parsed.candles) == 10
    assert fields(parsed.candles[0]) == (
        at(1634943780),
        D("60685.22000000"),
        D("60729.84000000"),
        D("60670.90000000"),
        D("60719.27000000"),
        D("21.63272000"),
        D("1313200.01340410"),
        617,
    )


def test_coinbase_exchange_field_order_low_high_open_close():
    parsed = PARSERS["coinbase"](
        (EX / "coinbase_exchange" / "products_BTC-USDT_candles_1h_ccxt.json").read_text(), "BTC-USDT", 3600
    )
    assert [fields(c) for c in parsed.candles] == [
        (at(1710327600), D("73243.33"), D("73402.47"), D("73241.5"), D("73370.65"), D("1.56794406"), None, None)
    ]


def test_bitfinex_field_order_open_close_high_low():
    parsed = PARSERS["bitfinex"](
        (EX / "bitfinex" / "v2_candles_trade_1h_tBTCUST_hist_ccxt.json").read_text(), "tBTCUST", 3600
    )
    assert [fields(c) for c in parsed.candles] == [
        (at(1552298400), D("3870.1"), D("3890"), D("3870.1"), D("3890"), D("0.05"), None, None)
    ]


def test_bitstamp_strings_and_seconds():
    parsed = PARSERS["bitstamp"]((EX / "bitstamp" / "api_v2_ohlc_btcusdt_1h_ccxt.json").read_text(), "btcusdt", 3600)
    assert [fields(c) for c in parsed.candles] == [
        (at(1710327600), D("73241"), D("73293"), D("73240"), D("73285"), D("0.01076655"), None, None)
    ]


def test_okx_newest_first_becomes_oldest_first():
    parsed = PARSERS["okx"]((EX / "okx" / "api_v5_market_candles_nautilus_2025.json").read_text(), "BTC-USDT", 60)
    assert [fields(c) for c in parsed.candles] == [
        (
            at(1747093980),
            D("102806"),
            D("102820.5"),
            D("102783.1"),
            D("102806.1"),
            D("7164.04"),
            D("7364701.57952"),
            None,
        ),
        (
            at(1747094040),
            D("102806.1"),
            D("102820.4"),
            D("102806.1"),
            D("102820.4"),
            D("1040.37"),
            D("1069603.34883"),
            None,
        ),
    ]
    legacy = PARSERS["okx"]((EX / "okx" / "api_v5_market_candles_nautilus_2021.json").read_text(), "BTC-USDT", 60)
    assert [c.close for c in legacy.candles] == [D("33783.9"), D("33782.1")]


def test_bybit_list_newest_first():
    body = (EX / "bybit" / "v5_market_kline_inverse_BTCUSD_60_official_docs_example.json").read_text()
    parsed = PARSERS["bybit"](body, "BTCUSD", 3600)
    assert [c.open_time for c in parsed.candles] == [at(1670601600), at(1670605200), at(1670608800)]
    assert fields(parsed.candles[-1]) == (
        at(1670608800),
        D("17071"),
        D("17073"),
        D("17027"),
        D("17055.5"),
        D("268611"),
        D("15.74462667"),
        None,
    )


def test_bad_candles_are_rejected_with_reasons_and_duplicates_collapse(db_url):
    """The parser rejects what it cannot decode; core.write_venue_candles (core.candle_problem, the grid)
    rejects the rest with a reason and stores the valid ones."""
    rows = [
        [60, 90, 110, 100, 105, 1],  # good (coinbase order: time, low, high, open, close, volume)
        [120, 0, 110, 90, 105, 1],  # zero low
        [180, 100, 99, 90, 95, 1],  # high 99 below low 100
        [240, 90, 110, 100, 105, -1],  # negative volume
        [61, 90, 110, 100, 105, 1],  # off the 60 s grid
        [60, 90, 111, 100, 106, 2],  # duplicate of the first: the later one wins
        [300, 90, 110, 100],  # truncated row
    ]
    import json

    import psycopg

    from app.market.ingest import write_candles

    parsed = parse_coinbase(json.dumps(rows), "BTC-USD", 60)
    with psycopg.connect(db_url) as conn:
        judged = write_candles(conn, "coinbase", parsed.candles)
        stored = conn.execute("SELECT open_time, close_price FROM raw.venue_candles ORDER BY 1").fetchall()
    assert stored == [(at(60), D(106))]
    rejected = parsed.rejected + [(parsed.candles[i].raw, reason) for i, reason in judged]
    reasons = [reason for _, reason in sorted(rejected, key=lambda r: rows.index(list(r[0])))]
    assert reasons[0].startswith("non-positive low") and reasons[1].startswith("high 99 below")
    assert reasons[2].startswith("negative volume_base") and "grid" in reasons[3]
    assert reasons[4].startswith("malformed candle")


def test_nan_and_error_bodies():
    nan = parse_binance('[[60000, "NaN", "1", "1", "1", "1", 0, "1", 1]]', "BTCUSDT", 60)
    assert nan.candles == [] and "finite" in nan.rejected[0][1]
    with pytest.raises(VenueResponseError, match="not JSON"):
        parse_binance('[[60000, "1", "1"', "BTCUSDT", 60)
    with pytest.raises(VenueResponseError, match="binance error"):
        parse_binance('{"code": -1121, "msg": "Invalid symbol."}', "BTCUSDT", 60)
