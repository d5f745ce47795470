"""Price-lane SQL on hand-made rows, both engines: registry seeding, venue 10m rows, the canonical composer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
import pytest

from tests.chainrows import Block, insert_blocks

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def bucket(n: int) -> datetime:
    return T0 + timedelta(minutes=10 * n)


def seed(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT core.seed_price_source_registry()")


def venue_row(conn, venue, n, o, h, low, c, volume, updated_after_close=True, actual=10):
    """A row of the venue's BTC market (the registry row named after the venue: its symbol)."""
    updated = bucket(n) + timedelta(minutes=15 if updated_after_close else 5)
    conn.execute(
        f"INSERT INTO core.{venue}_price_10m (bucket_start_utc, symbol, open_price_usd, high_price_usd, low_price_usd,"
        " close_price_usd, volume_btc, source_updated_at, quality_status, data_source_mode,"
        " expected_child_candle_count, actual_child_candle_count)"
        " SELECT %s, r.symbol, %s, %s, %s, %s, %s, %s, 'complete', 'test', 10, %s"
        " FROM core.mq_price_source_registry AS r WHERE r.source_name = %s",
        (bucket(n), o, h, low, c, volume, updated, actual, venue),
    )


def usdt_rate_row(conn, n, rate, volume=1):
    """A bitstamp usdtusd 10m row (the direct USDT/USD market) for bucket n."""
    conn.execute(
        "INSERT INTO core.bitstamp_price_10m (bucket_start_utc, symbol, open_price_usd, high_price_usd, low_price_usd,"
        " close_price_usd, volume_btc, source_updated_at, quality_status, data_source_mode)"
        " VALUES (%s, 'usdtusd', %s, %s, %s, %s, %s, %s, 'complete', 'test')",
        (bucket(n), rate, rate, rate, rate, volume, bucket(n) + timedelta(minutes=15)),
    )


def handmade_venues(conn: psycopg.Connection) -> None:
    with conn.transaction():
        # The USDT venues (bybit, binance, okx) are converted at USDT/USD: exactly 1 in buckets 2..5 here.
        conn.execute("UPDATE core.mq_price_source_registry SET enabled = true WHERE source_name = 'bitstamp_usdtusd'")
        for n in (2, 3, 4, 5):
            usdt_rate_row(conn, n, 1)
        # bucket 1: one venue
        venue_row(conn, "bitstamp", 1, 100, 110, 90, 105, 2)
        # bucket 2: two valid venues weighted 1:3, okx invalid (high below open)
        venue_row(conn, "coinbase", 2, 100, 120, 95, 110, 1)
        venue_row(conn, "bitstamp", 2, 102, 112, 98, 108, 3)
        venue_row(conn, "okx", 2, 100, 90, 80, 95, 5)
        # bucket 3: volumes all zero -> equal weights
        venue_row(conn, "bitfinex", 3, 200, 210, 190, 205, 0)
        venue_row(conn, "bybit", 3, 202, 212, 192, 207, 0)
        # bucket 4: binance 29% above the others (an outlier for median_filtered_v1)
        venue_row(conn, "coinbase", 4, 100, 100, 100, 100, 1)
        venue_row(conn, "bitstamp", 4, 101, 101, 101, 101, 1)
        venue_row(conn, "binance", 4, 130, 130, 130, 130, 1)
        # bucket 5: okx written before its bucket closed (stale for median_filtered_v1)
        venue_row(conn, "coinbase", 5, 100, 100, 100, 100, 1)
        venue_row(conn, "okx", 5, 102, 102, 102, 102, 1, updated_after_close=False)
        # bucket 6: nobody traded. bucket 7: one venue, a symbol the registry does not use is ignored.
        venue_row(conn, "bitstamp", 7, 50, 50, 50, 50, 1)
        conn.execute(
            "INSERT INTO core.bitstamp_price_10m (bucket_start_utc, symbol, open_price_usd, high_price_usd,"
            " low_price_usd, close_price_usd, source_updated_at, quality_status, data_source_mode)"
            " VALUES (%s, 'btceur', 1, 1, 1, 1, %s, 'complete', 'test')",
            (bucket(7), bucket(8)),
        )


def canonical(conn) -> list[tuple]:
    rows = conn.execute(
        "SELECT bucket_start_utc, source_count, source_names, open_price_usd, high_price_usd, low_price_usd,"
        " close_price_usd, volume_btc, excluded_sources FROM core.mq_btc_price_10m ORDER BY 1"
    ).fetchall()
    conn.commit()
    return [(*r[:8], [(e["source"], e["reason"].split(":")[0]) for e in r[8]]) for r in rows]


def compose(conn, method="volume_weighted_ohlc_v1", **kw):
    with conn.transaction():
        return conn.execute(
            "SELECT * FROM core.compose_btc_price_10m(%s, %s, %s)", (method, kw.get("start"), kw.get("end"))
        ).fetchall()


def test_registry_seed_keeps_edits_and_resets_on_request(db_url):
    with psycopg.connect(db_url) as conn:
        seed(conn)
        rows = conn.execute(
            "SELECT source_name, config_json ->> 'mode', enabled FROM core.mq_price_source_registry"
            " ORDER BY priority_rank"
        ).fetchall()
        assert rows == [
            ("bitstamp", "local", True),
            ("coinbase", "local", True),
            ("bybit", "local", True),
            ("binance", "remote", True),
            ("okx", "local", True),
            ("bitfinex", "local", True),
            # stablecoin/USD rate markets, disabled until an operator enables them
            ("bitstamp_usdtusd", "local", False),
            ("coinbase_usdt_usd", "local", False),
            ("bitfinex_tustusd", "local", False),
            ("bitstamp_usdcusd", "local", False),
            ("bitfinex_tudcusd", "local", False),
        ]
        quotes = conn.execute(
            "SELECT source_name, venue, base_currency, quote_currency FROM core.mq_price_source_registry"
            " WHERE base_currency = 'BTC' ORDER BY priority_rank"
        ).fetchall()
        assert [q[3] for q in quotes] == ["USD", "USD", "USDT", "USDT", "USDT", "USD"]
        assert all(q[0] == q[1] for q in quotes)
        (binance,) = conn.execute(
            "SELECT config_json FROM core.mq_price_source_registry WHERE source_name = 'binance'"
        ).fetchone()
        assert binance == {
            "mode": "remote",
            "api_base": "https://api.binance.com",
            "endpoint": "/api/v3/klines",
            "market_type": "spot",
            "symbol": "BTCUSDT",
            "child_interval": "1m",
            "historical_start_utc": "2017-08-17T00:00:00Z",
            "auto_historical_backfill": True,
        }
        with conn.transaction():
            conn.execute(
                "UPDATE core.mq_price_source_registry SET enabled = false, config_json = config_json"
                " || '{\"mode\": \"local\"}' WHERE source_name IN ('okx', 'binance')"
            )
        seed(conn)  # re-seeding keeps the edits
        edited = conn.execute(
            "SELECT source_name, config_json ->> 'mode', enabled FROM core.mq_price_source_registry"
            " WHERE source_name IN ('okx', 'binance') ORDER BY 1"
        ).fetchall()
        assert edited == [("binance", "local", False), ("okx", "local", False)]
        with conn.transaction():
            (n,) = conn.execute("SELECT core.seed_price_source_registry('binance')").fetchone()
        assert n == 1
        reset = conn.execute(
            "SELECT config_json ->> 'mode', enabled FROM core.mq_price_source_registry WHERE source_name = 'binance'"
        ).fetchone()
        assert reset == ("remote", True)


def test_venue_10m_rows_from_child_candles(db_url):
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            rows = []
            for minute in range(10):  # bucket 0: all ten 1m candles
                rows.append(
                    (
                        bucket(0) + timedelta(minutes=minute),
                        100 + minute,
                        101 + minute,
                        99 + minute,
                        100.5 + minute,
                        1,
                        100,
                    )
                )
            for minute in (0, 4, 9):  # bucket 2: three of ten (bucket 1 has none: no row, never a fake one)
                rows.append((bucket(2) + timedelta(minutes=minute), 200, 210 + minute, 190, 205, 2, 400))
            for t, o, h, low, c, vol, quote in rows:
                conn.execute(
                    "INSERT INTO raw.venue_candles (venue, symbol, interval_sec, open_time, open_price, high_price,"
                    " low_price, close_price, volume_base, volume_quote, trade_count, raw_payload, loaded_at)"
                    " VALUES ('coinbase', 'BTC-USD', 60, %s, %s, %s, %s, %s, %s, %s, 7, %s, %s)",
                    (t, o, h, low, c, vol, quote, json.dumps([t.isoformat()]), bucket(3)),
                )
            (n,) = conn.execute(
                "SELECT core.build_venue_price_10m('coinbase', 'BTC-USD', %s, %s)", (bucket(0), bucket(2))
            ).fetchone()
        assert n == 2
        query = (
            "SELECT bucket_start_utc, open_price_usd, high_price_usd, low_price_usd, close_price_usd, volume_btc,"
            " volume_usd, trade_count, quality_status, expected_child_candle_count, actual_child_candle_count,"
            " gap_count FROM core.coinbase_price_10m ORDER BY 1"
        )
        first = conn.execute(query).fetchall()
        assert first == [
            (bucket(0), D(100), D(110), D(99), D("109.5"), D(10), D(1000), 70, "complete", 10, 10, 0),
            (bucket(2), D(200), D(219), D(190), D(205), D(6), D(1200), 21, "partial", 10, 3, 7),
        ]
        (checkpoint,) = conn.execute(
            "SELECT last_bucket_time FROM core.sync_checkpoints WHERE component = 'btc_price_source_coinbase'"
        ).fetchone()
        assert checkpoint == bucket(0)  # the last complete bucket
        with conn.transaction():
            conn.execute("SELECT core.build_venue_price_10m('coinbase', 'BTC-USD', %s, %s)", (bucket(0), bucket(2)))
        assert conn.execute(query).fetchall() == first
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT core.build_venue_price_10m('kraken', 'XBTUSD', %s, %s)", (bucket(0), bucket(1)))


def test_composer_volume_weighted_v1(db_url):
    with psycopg.connect(db_url) as conn:
        seed(conn)
        handmade_venues(conn)
        assert compose(conn) == [(bucket(1), bucket(7), 7)]
        assert canonical(conn) == [
            (bucket(1), 1, ["bitstamp"], D(100), D(110), D(90), D(105), D(2), []),
            (
                bucket(2),
                2,
                ["bitstamp", "coinbase"],
                D("101.5"),
                D(114),
                D("97.25"),
                D("108.5"),
                D(4),
                [("okx", "invalid")],
            ),
            (bucket(3), 2, ["bitfinex", "bybit"], D(201), D(211), D(191), D(206), D(0), []),
            (
                bucket(4),
                3,
                ["binance", "bitstamp", "coinbase"],
                D("110.33333333"),
                D("110.33333333"),
                D("110.33333333"),
                D("110.33333333"),
                D(3),
                [],
            ),
            (bucket(5), 2, ["coinbase", "okx"], D(101), D(101), D(101), D(101), D(2), []),
            (bucket(6), 0, [], None, None, None, None, None, []),
            (bucket(7), 1, ["bitstamp"], D(50), D(50), D(50), D(50), D(1), []),
        ]
        before = canonical(conn)
        compose(conn, start=bucket(1))  # re-composing a range yields identical rows
        assert canonical(conn) == before


def test_composer_median_filtered_excludes_outliers_and_stale_rows(db_url):
    with psycopg.connect(db_url) as conn:
        seed(conn)
        handmade_venues(conn)
        compose(conn, "median_filtered_v1")
        rows = {r[0]: r for r in canonical(conn)}
    assert rows[bucket(4)] == (
        bucket(4),
        2,
        ["bitstamp", "coinbase"],
        D("100.5"),
        D("100.5"),
        D("100.5"),
        D("100.5"),
        D(2),
        [("binance", "outlier")],
    )
    assert rows[bucket(5)] == (bucket(5), 1, ["coinbase"], D(100), D(100), D(100), D(100), D(1), [("okx", "stale")])
    assert rows[bucket(2)][-1] == [("okx", "invalid")]


def test_composer_is_timeline_complete_against_the_backbone(db_url):
    btc = 100_000_000
    with psycopg.connect(db_url) as conn:
        seed(conn)
        insert_blocks(conn, [Block(0, bucket(0), bucket(0), 50 * btc), Block(1, bucket(2), bucket(2), 50 * btc)])
        with conn.transaction():
            conn.execute("SELECT * FROM core.build_primitive_10m(%s)", (bucket(8),))
        handmade_venues(conn)
        assert compose(conn) == [(bucket(0), bucket(8), 9)]
        prices = conn.execute(
            "SELECT p.bucket_start_utc, m.source_count, p.close_price_usd, p.market_cap_usd"
            " FROM core.btc_primitive_10m AS p JOIN core.mq_btc_price_10m AS m USING (bucket_start_utc) ORDER BY 1"
        ).fetchall()
    assert [(r[0], r[1]) for r in prices] == [(bucket(n), c) for n, c in enumerate([0, 1, 2, 2, 3, 2, 0, 1, 0])]
    # Supply is 50 BTC from block 1 (bucket 2) on; market cap = supply x canonical close; NULL without a price.
    assert prices[0][2:] == (None, None) and prices[1][2:] == (D(105), D(0))
    assert prices[2][2:] == (D("108.5"), D("5425.00000000")) and prices[6][2:] == (None, None)


def test_prices_commands(server_url):
    from tests.test_cli import mqnode

    env = {"MQNODE_DATABASE_URL": server_url}
    # `db upgrade` seeded the registry already; seeding again keeps it, --reset all restores the six.
    seeded = mqnode("prices", "seed", env=env)
    assert seeded.returncode == 0 and "0 row(s) written" in seeded.stdout, seeded.stderr
    assert "11 row(s) written" in mqnode("prices", "seed", "--reset", "all", env=env).stdout
    with psycopg.connect(server_url) as conn:
        handmade_venues(conn)
    composed = mqnode("prices", "compose", "--method", "median_filtered_v1", env=env)
    assert composed.returncode == 0, composed.stderr
    assert "2024-01-01 00:10:00+00:00 .. 2024-01-01 01:10:00+00:00 (7 buckets, median_filtered_v1)" in composed.stdout
    bad = mqnode("prices", "compose", "--method", "mean", env=env)
    assert bad.returncode != 0 and "invalid choice" in bad.stderr


def test_usdt_venues_are_converted_at_the_measured_rate_or_left_out(db_url):
    """USDT quotes x the bucket's USDT/USD rate (direct market first, else implied from a venue listing BTC
    against USD and USDT); no rate: the USDT venue is left out with 'no_usd_rate', never taken 1:1."""
    with psycopg.connect(db_url) as conn:
        seed(conn)
        with conn.transaction():
            conn.execute(
                "UPDATE core.mq_price_source_registry SET enabled = (source_name IN"
                " ('bitstamp', 'okx', 'bitstamp_usdtusd'))"
            )
            # coinbase lists BTC-USD and BTC-USDT (not contributing: only the rate is implied from it)
            conn.execute(
                "INSERT INTO core.mq_price_source_registry (source_name, venue, market_type, symbol, base_currency,"
                " quote_currency, config_json, priority_rank, enabled) VALUES"
                " ('coinbase_btc_usdt', 'coinbase', 'spot', 'BTC-USDT', 'BTC', 'USDT', '{\"mode\": \"local\"}', 20,"
                " true)"
            )
            conn.execute("UPDATE core.mq_price_source_registry SET enabled = true WHERE source_name = 'coinbase'")
            # bucket 1: direct USDT/USD 0.95 (coinbase's implied rate is ignored: direct has precedence)
            usdt_rate_row(conn, 1, D("0.95"), volume=10)
            venue_row(conn, "okx", 1, 1000, 1000, 1000, 1000, 1)
            venue_row(conn, "bitstamp", 1, 950, 950, 950, 950, 1)
            # bucket 2: no direct market; coinbase BTC-USD 960 / BTC-USDT 1000 -> implied 0.96
            venue_row(conn, "okx", 2, 1000, 1000, 1000, 1000, 1)
            venue_row(conn, "bitstamp", 2, 960, 960, 960, 960, 1)
            # bucket 3: no rate at all: okx is left out
            venue_row(conn, "okx", 3, 1000, 1000, 1000, 1000, 1)
            venue_row(conn, "bitstamp", 3, 990, 990, 990, 990, 1)
        with conn.transaction():
            for n, c in ((1, 960), (2, 960)):
                conn.execute(
                    "INSERT INTO core.coinbase_price_10m (bucket_start_utc, symbol, open_price_usd, high_price_usd,"
                    " low_price_usd, close_price_usd, volume_btc, source_updated_at, quality_status, data_source_mode)"
                    " VALUES (%s, 'BTC-USDT', 1000, 1000, 1000, 1000, 1, %s, 'complete', 'test'),"
                    " (%s, 'BTC-USD', %s, %s, %s, %s, 0, %s, 'complete', 'test')",
                    (bucket(n), bucket(n + 2), bucket(n), c, c, c, c, bucket(n + 2)),
                )
        compose(conn)
        rows = conn.execute(
            "SELECT bucket_start_utc, source_names, close_price_usd, contributing_sources, excluded_sources, usd_rates"
            " FROM api.btc_price_canonical_10m ORDER BY 1"
        ).fetchall()
    by_bucket = {r[0]: r for r in rows}
    # bucket 1: okx 1000 USDT x 0.95 = 950, bitstamp 950; coinbase BTC-USD has no volume here: no weight
    b1 = by_bucket[bucket(1)]
    assert b1[2] == D("950.00000000")
    okx = next(c for c in b1[3] if c["source"] == "okx")
    assert (okx["quote"], D(str(okx["usd_rate"])), okx["rate_source"], D(str(okx["close"]))) == (
        "USDT",
        D("0.95"),
        "direct",
        D(1000),
    )
    assert b1[5]["USDT"]["rate_source"] == "direct" and D(str(b1[5]["USDT"]["rate"])) == D("0.95")
    # bucket 2: implied 960 / 1000 = 0.96 from coinbase
    b2 = by_bucket[bucket(2)]
    assert b2[5]["USDT"]["rate_source"] == "implied"
    assert b2[5]["USDT"]["markets"][0]["source"] == "coinbase/coinbase_btc_usdt"
    assert D(str(b2[5]["USDT"]["rate"])) == D("0.96")
    assert "okx" in b2[1] and D(str(next(c for c in b2[3] if c["source"] == "okx")["close_usd"])) == D(960)
    # bucket 3: no USDT/USD rate: okx left out, reason recorded
    b3 = by_bucket[bucket(3)]
    assert b3[1] == ["bitstamp"] and b3[2] == D(990) and b3[5] == {}
    assert [(e["source"], e["reason"].split(":")[0]) for e in b3[4]] == [("okx", "no_usd_rate")]
