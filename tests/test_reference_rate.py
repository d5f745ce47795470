"""The USD reference rate on real recorded data, both engines: Binance.US 1m BTCUSD, BTCUSDT and BTCUSDC of
2023-03-01 .. 2023-03-21 (tests/fixtures/exchanges/binanceus, PROVENANCE.md there), which include the USDC
de-peg of 2023-03-10/13, composed with and without the stablecoin conversion; reference_rate_v1 against a
one-minute 20% bad print; reference_rate_v1's slice rule on hand-made candles.

The three pairs are registered as three markets of venue binance (Binance.US serves Binance's klines
format, so the binance loader and table hold them): binance BTCUSDT (quote USDT), binance_btcusd (USD) and
binance_btcusdc (USDC). The stablecoin rates are implied from the same venue (BTCUSD close / BTCUSDT or
BTCUSDC close of the bucket); no direct stablecoin/USD market is enabled.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg

from tests.conftest import FIXTURES

RECORDING = FIXTURES / "exchanges" / "binanceus"
PAIRS = {"BTCUSD": "USD", "BTCUSDT": "USDT", "BTCUSDC": "USDC"}
FIRST = datetime(2023, 3, 1, tzinfo=UTC)
LAST = datetime(2023, 3, 21, 23, 50, tzinfo=UTC)
DEPEG_BUCKET = datetime(2023, 3, 11, 14, 10, tzinfo=UTC)

LOAD = """
INSERT INTO raw.venue_candles (venue, symbol, interval_sec, open_time, open_price, high_price, low_price,
                               close_price, volume_base, raw_payload, loaded_at)
SELECT 'binance', %(symbol)s, 60, t, o, h, l, c, v, '[]'::jsonb, t + INTERVAL '2 minutes'
FROM unnest(%(t)s::timestamptz[], %(o)s::numeric[], %(h)s::numeric[], %(l)s::numeric[], %(c)s::numeric[],
            %(v)s::numeric[]) AS u (t, o, h, l, c, v)
"""

COMPOSITION = (
    "SELECT bucket_start_utc, close_price_usd, source_names, contributing_sources, excluded_sources, usd_rates"
    " FROM core.btc_price_composition_10m(%s, %s, %s, 0.02, 0.5, %s) ORDER BY 1"
)


def recording(symbol: str) -> dict[str, list]:
    with (RECORDING / f"{symbol}_1m_20230301_20230321.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "t": [datetime.fromisoformat(r["open_time"]) for r in rows],
        **{
            k: [r[name] for r in rows]
            for k, name in zip("ohlcv", ("open", "high", "low", "close", "volume"), strict=True)
        },
    }


def load_binanceus(conn: psycopg.Connection) -> None:
    """The three recorded markets as registry markets of venue binance, raw 1m candles and 10m rows."""
    with conn.transaction():
        conn.execute("SELECT core.seed_price_source_registry()")
        conn.execute("UPDATE core.mq_price_source_registry SET enabled = (source_name = 'binance')")
        conn.execute(
            "INSERT INTO core.mq_price_source_registry (source_name, venue, market_type, symbol, base_currency,"
            " quote_currency, config_json, priority_rank) VALUES"
            " ('binance_btcusd', 'binance', 'spot', 'BTCUSD', 'BTC', 'USD',"
            ' \'{"mode": "local", "symbol": "BTCUSD"}\', 21),'
            " ('binance_btcusdc', 'binance', 'spot', 'BTCUSDC', 'BTC', 'USDC',"
            ' \'{"mode": "local", "symbol": "BTCUSDC"}\', 22)'
        )
        for symbol in PAIRS:
            conn.execute(LOAD, {"symbol": symbol, **recording(symbol)})
    for symbol in PAIRS:
        with conn.transaction():
            conn.execute(
                "SELECT core.build_venue_price_10m('binance', %s, %s, %s)", (symbol, FIRST, LAST + timedelta(minutes=9))
            )
    # Statistics, as autovacuum gathers them after a bulk load (without them every join looks one row long).
    with conn.transaction():
        conn.execute("ANALYZE raw.venue_candles")
        conn.execute("ANALYZE core.binance_price_10m")


def usd_market(conn) -> dict[datetime, D]:
    """Binance.US BTCUSD's own 10m closes: the USD market the compositions are measured against."""
    return dict(
        conn.execute(
            "SELECT bucket_start_utc, close_price_usd FROM core.binance_price_10m WHERE symbol = 'BTCUSD'"
        ).fetchall()
    )


def off(price: D, reference: D) -> D:
    return abs(price / reference - 1)


def test_march_2023_usdc_depeg_with_and_without_conversion(db_url):
    with psycopg.connect(db_url) as conn:
        load_binanceus(conn)
        usd = usd_market(conn)
        assert len(usd) == 21 * 144
        with conn.transaction():
            assert conn.execute("SELECT * FROM core.compose_btc_price_10m('volume_weighted_ohlc_v1')").fetchone() == (
                FIRST,
                LAST,
                21 * 144,
            )
        converted = conn.execute(
            "SELECT bucket_start_utc, close_price_usd, source_names, contributing_sources, excluded_sources, usd_rates"
            " FROM api.btc_price_canonical_10m ORDER BY 1"
        ).fetchall()
        unconverted = conn.execute(COMPOSITION, ("volume_weighted_ohlc_v1", FIRST, LAST, False)).fetchall()
        ref_converted = dict(
            (r[0], r[1]) for r in conn.execute(COMPOSITION, ("reference_rate_v1", FIRST, LAST, True)).fetchall()
        )
        with conn.transaction():
            conn.execute(
                "UPDATE core.mq_price_source_registry SET enabled = false WHERE source_name <> 'binance_btcusd'"
            )
        ref_usd_only = dict(
            (r[0], r[1]) for r in conn.execute(COMPOSITION, ("reference_rate_v1", FIRST, LAST, True)).fetchall()
        )
    assert len(converted) == len(unconverted) == len(ref_converted) == 21 * 144
    # Every bucket has the USD and USDT markets (USDC where it traded), converted at the rate implied from
    # BTCUSD in the same bucket; nothing is left out for want of a rate.
    assert all(r[2][:2] == ["binance", "binance_btcusd"] for r in converted)
    assert not [r for r in converted if any(e["reason"].startswith("no_usd_rate") for e in r[4])]
    worst_converted = max(off(r[1], usd[r[0]]) for r in converted)
    assert worst_converted < D("0.001")
    unconverted_by_bucket = {r[0]: r for r in unconverted}
    march_11 = [r for r in unconverted if r[0].date() == DEPEG_BUCKET.date()]
    assert sum(1 for r in march_11 if off(r[1], usd[r[0]]) > D("0.01")) >= 3
    # The named bucket: unconverted > 1% off the USD market, converted < 0.1%.
    depeg = {r[0]: r for r in converted}[DEPEG_BUCKET]
    assert off(unconverted_by_bucket[DEPEG_BUCKET][1], usd[DEPEG_BUCKET]) > D("0.01")
    assert off(depeg[1], usd[DEPEG_BUCKET]) < D("0.001")
    # Provenance of the bucket: each market's quote, rate, weight, raw and converted close; the USDC rate.
    markets = {c["source"]: c for c in depeg[3]}
    assert {s: (c["quote"], c["rate_source"]) for s, c in markets.items()} == {
        "binance": ("USDT", "implied"),
        "binance_btcusd": ("USD", "usd"),
        "binance_btcusdc": ("USDC", "implied"),
    }
    usdc_rate = D(str(depeg[5]["USDC"]["rate"]))
    assert D("0.85") < usdc_rate < D("0.95")  # USDC near 0.87-0.9 USD on 11 March 2023
    assert [(m["source"], m["weight"]) for m in depeg[5]["USDC"]["markets"]] == [("binance_btcusd/binance_btcusdc", 1)]
    assert abs(sum(D(str(c["weight"])) for c in depeg[3]) - 1) < D("0.0000001")
    assert off(D(str(markets["binance_btcusdc"]["close_usd"])), usd[DEPEG_BUCKET]) < D("0.000001")
    # reference_rate_v1 over the minutes, converted at the bucket's rate, against the USD market alone under
    # the same method (in other buckets the stablecoin moving within the 10 minutes shows: worst printed).
    assert off(ref_converted[DEPEG_BUCKET], ref_usd_only[DEPEG_BUCKET]) < D("0.001")
    print(
        f"\n{DEPEG_BUCKET}: BTCUSD close {usd[DEPEG_BUCKET]}, unconverted {unconverted_by_bucket[DEPEG_BUCKET][1]}"
        f" ({100 * (unconverted_by_bucket[DEPEG_BUCKET][1] / usd[DEPEG_BUCKET] - 1):.3f}%), converted {depeg[1]}"
        f" ({100 * (depeg[1] / usd[DEPEG_BUCKET] - 1):.5f}%), USDC/USD {usdc_rate},"
        f" USDT/USD {depeg[5]['USDT']['rate']}; worst converted over 21 days {100 * worst_converted:.5f}%;"
        f" reference_rate_v1 {ref_converted[DEPEG_BUCKET]} vs USD-only {ref_usd_only[DEPEG_BUCKET]};"
        f" worst reference_rate_v1 converted vs USD-only"
        f" {100 * max(off(ref_converted[t], ref_usd_only[t]) for t in ref_usd_only):.4f}%"
    )


def test_no_usd_rate_leaves_the_stablecoin_markets_out(db_url):
    with psycopg.connect(db_url) as conn:
        load_binanceus(conn)
        with conn.transaction():  # BTCUSD did not trade in the bucket: no implied rate
            conn.execute(
                "DELETE FROM core.binance_price_10m WHERE symbol = 'BTCUSD' AND bucket_start_utc = %s", (DEPEG_BUCKET,)
            )
            conn.execute(
                "DELETE FROM raw.venue_candles WHERE symbol = 'BTCUSD' AND open_time >= %s AND open_time < %s",
                (DEPEG_BUCKET, DEPEG_BUCKET + timedelta(minutes=10)),
            )
        for method in ("volume_weighted_ohlc_v1", "median_filtered_v1", "reference_rate_v1"):
            rows = conn.execute(COMPOSITION, (method, DEPEG_BUCKET, DEPEG_BUCKET, True)).fetchall()
            assert [(r[1], r[2], [(e["source"], e["reason"].split(":")[0]) for e in r[4]]) for r in rows] == [
                (None, [], [("binance", "no_usd_rate"), ("binance_btcusdc", "no_usd_rate")])
            ], method
            assert rows[0][5] == {}


def test_a_20_percent_print_for_one_minute_barely_moves_reference_rate_v1(db_url):
    minute = DEPEG_BUCKET + timedelta(minutes=3)
    with psycopg.connect(db_url) as conn:
        load_binanceus(conn)
        volumes = dict(
            conn.execute("SELECT symbol, volume_base FROM raw.venue_candles WHERE open_time = %s", (minute,)).fetchall()
        )
        # The bad print is on a market holding less than half the minute's volume (a venue with more than
        # half of a minute's volume is that minute's volume-weighted median by definition).
        assert 0 < volumes["BTCUSDT"] < sum(volumes.values()) / 2

        def both() -> tuple[D, D]:
            ref = conn.execute(COMPOSITION, ("reference_rate_v1", DEPEG_BUCKET, DEPEG_BUCKET, True)).fetchone()
            v1 = conn.execute(COMPOSITION, ("volume_weighted_ohlc_v1", DEPEG_BUCKET, DEPEG_BUCKET, True)).fetchone()
            conn.commit()
            return ref[1], v1

        ref_before, v1_before = both()
        with conn.transaction():
            conn.execute(
                "UPDATE raw.venue_candles SET open_price = open_price * 1.2, high_price = high_price * 1.2,"
                " low_price = low_price * 1.2, close_price = close_price * 1.2"
                " WHERE symbol = 'BTCUSDT' AND open_time = %s",
                (minute,),
            )
            conn.execute(
                "SELECT core.build_venue_price_10m('binance', 'BTCUSDT', %s, %s)", (DEPEG_BUCKET, DEPEG_BUCKET)
            )
        ref_after, v1_after = both()
    moved = off(ref_after, ref_before)
    assert moved < D("0.001"), (ref_before, ref_after)
    # The 10m-bar methods see the print in the bucket's high (the close is the last minute's).
    v1_high = {c["source"]: c for c in v1_after[3]}
    assert v1_high["binance"]["close"] == {c["source"]: c for c in v1_before[3]}["binance"]["close"]
    print(
        f"\nreference_rate_v1 {ref_before} -> {ref_after} after a 20% print on BTCUSDT at {minute}: {100 * moved:.5f}%"
    )


def test_reference_rate_v1_slices_on_handmade_candles(db_url):
    """Weighted median per minute, mean over non-empty minutes; one market; a stale and a gap market."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)

    def candle(conn, venue, symbol, minute, close, volume, closed=True):
        t = t0 + timedelta(minutes=minute)
        conn.execute(
            "INSERT INTO raw.venue_candles (venue, symbol, interval_sec, open_time, open_price, high_price,"
            " low_price, close_price, volume_base, raw_payload, loaded_at)"
            " VALUES (%s, %s, 60, %s, %s, %s, %s, %s, %s, '[]', %s)",
            (venue, symbol, t, close, close, close, close, volume, t + timedelta(seconds=90 if closed else 30)),
        )

    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            conn.execute("SELECT core.seed_price_source_registry()")
            conn.execute(
                "UPDATE core.mq_price_source_registry"
                " SET enabled = (source_name IN ('bitstamp', 'coinbase', 'bitfinex'))"
            )
            for m in range(10):  # bucket 0: bitstamp every minute at 100 (volume 1)
                candle(conn, "bitstamp", "btcusd", m, 100, 1)
            for m in range(8):  # coinbase at 110 with volume 3 in minutes 0..7: it is those slices' median
                candle(conn, "coinbase", "BTC-USD", m, 110, 3)
            for m in range(4):  # bitfinex closed candles in 4 of 10 minutes: stale (coverage < 0.5)
                candle(conn, "bitfinex", "tBTCUSD", m, 90, 100)
            # bucket 1: one market, minutes 0, 1, 2, 3 and 5 only (the other slices are empty; 5 of 10 is just
            # enough coverage): mean of its closes; the forming minute 6 (loaded before it ended) does not count
            for m, c in ((10, 200), (11, 203), (12, 206), (13, 209), (15, 212)):
                candle(conn, "bitstamp", "btcusd", m, c, 0)
            candle(conn, "bitstamp", "btcusd", 16, 1000, 0, closed=False)
            # bucket 2: coinbase has a 10m row but no 1m children (gap); bitstamp and bitfinex five minutes, no volume
            for i in range(5):
                candle(conn, "bitstamp", "btcusd", 20 + i, 300 + i, 0)
                candle(conn, "bitfinex", "tBTCUSD", 20 + i, 304 + i, 0)
        for venue, symbol in (("bitstamp", "btcusd"), ("coinbase", "BTC-USD"), ("bitfinex", "tBTCUSD")):
            with conn.transaction():
                conn.execute(
                    "SELECT core.build_venue_price_10m(%s, %s, %s, %s)",
                    (venue, symbol, t0, t0 + timedelta(minutes=29)),
                )
        with conn.transaction():
            conn.execute(
                "DELETE FROM raw.venue_candles WHERE venue = 'coinbase' AND open_time >= %s",
                (t0 + timedelta(minutes=20),),
            )
            conn.execute(
                "INSERT INTO core.coinbase_price_10m (bucket_start_utc, symbol, open_price_usd, high_price_usd,"
                " low_price_usd, close_price_usd, volume_btc, source_updated_at, quality_status, data_source_mode)"
                " VALUES (%s, 'BTC-USD', 305, 305, 305, 305, 1, %s, 'complete', 'websocket')",
                (t0 + timedelta(minutes=20), t0 + timedelta(minutes=31)),
            )
        rows = conn.execute(COMPOSITION, ("reference_rate_v1", t0, t0 + timedelta(minutes=20), True)).fetchall()
    by_bucket = {r[0]: r for r in rows}
    b0, b1, b2 = (by_bucket[t0 + timedelta(minutes=10 * n)] for n in range(3))
    # bucket 0: minutes 0..7 median 110 (coinbase 3 of 4 weight), minutes 8..9 bitstamp alone 100: (8*110 + 2*100)/10
    assert b0[1] == D(108) and b0[2] == ["bitstamp", "coinbase"]
    assert [(e["source"], e["reason"].split(":")[0]) for e in b0[4]] == [("bitfinex", "stale")]
    weights = {c["source"]: (D(str(c["weight"])), c["slices"]) for c in b0[3]}
    assert weights == {"bitstamp": (D("0.4"), 10), "coinbase": (D("0.6"), 8)}  # (8 x 1/4 + 2 x 1) / 10; 8 x 3/4 / 10
    # bucket 1: one market, three non-empty minutes (empty ones left out, the forming one not counted)
    assert b1[1] == D(206) and b1[2] == ["bitstamp"]
    # bucket 2: equal weights (no volume): minute medians (300+i + 304+i)/2 = 302+i for i = 0..4, mean 304;
    # coinbase: gap
    assert b2[1] == D(304) and b2[2] == ["bitfinex", "bitstamp"]
    assert [(e["source"], e["reason"].split(":")[0]) for e in b2[4]] == [("coinbase", "gap")]


def test_api_composes_any_method_on_request_for_comparison(db_url):
    from litestar.testing import TestClient

    from app.api.app import create_app
    from tests.test_prices_sql import T0, handmade_venues, seed

    with psycopg.connect(db_url) as conn:
        seed(conn)
        handmade_venues(conn)
        with conn.transaction():
            conn.execute("SELECT * FROM core.compose_btc_price_10m('volume_weighted_ohlc_v1')")
    window = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=2)).isoformat()}
    with TestClient(app=create_app(db_url, None)) as client:
        stored = client.get("/api/v1/btc/price/canonical", params=window).json()["items"]
        median = client.get("/api/v1/btc/price/canonical", params={**window, "method": "median_filtered_v1"})
        assert median.status_code == 200, median.text
        rows = {r["bucket_start_utc"]: r for r in median.json()["items"]}
        # bucket 4: the stored v1 counts binance's outlier, median_filtered_v1 leaves it out
        b4 = (T0 + timedelta(minutes=40)).isoformat().replace("+00:00", "Z")
        stored_b4 = next(r for r in stored if r["bucket_start_utc"] == b4)
        assert stored_b4["composition_method"] == "volume_weighted_ohlc_v1" and "binance" in stored_b4["source_names"]
        assert rows[b4]["composition_method"] == "median_filtered_v1" and rows[b4]["close_price_usd"] == "100.50000000"
        assert [e["source"] for e in rows[b4]["excluded_sources"]] == ["binance"]
        # paging with a cursor continues the same method's listing
        first = client.get("/api/v1/btc/price/canonical", params={**window, "method": "median_filtered_v1", "limit": 2})
        cursor = first.json()["next_cursor"]
        second = client.get(
            "/api/v1/btc/price/canonical",
            params={**window, "method": "median_filtered_v1", "limit": 2, "cursor": cursor},
        ).json()["items"]
        assert [r["bucket_start_utc"] for r in first.json()["items"] + second] == sorted(rows)[:4]
        for bad in ({"method": "median_filtered_v1"}, {**window, "method": "median_filtered_v1", "interval": "1h"}):
            assert client.get("/api/v1/btc/price/canonical", params=bad).status_code == 400
        assert client.get("/api/v1/btc/price/canonical", params={**window, "method": "mean"}).status_code == 400
