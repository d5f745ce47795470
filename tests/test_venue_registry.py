"""One venue list, one validity rule, one writer of venue rows (both engines).

The price source registry (core.mq_price_source_registry, seeded by core.seed_price_source_registry) is the
venue list: the venue tables and the frozen revisions that created them, the loaders' per-venue code (fetch
specs, parsers), the fake exchange and the view core.venue_price_10m are held against it here; the API, the
bench and the other tests read it. core.candle_problem is the candle validity rule; core.write_venue_price_10m
writes every venue 10m row, REST-built or pushed by a collector, with one precedence rule, rewind and NOTIFY.
"""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
import pytest

from app.market.candles import PARSERS
from app.market.fetch import VENUE_SPECS
from app.market.pushed_rows import PushedRowError, upsert_rows, validate_row
from tests.conftest import ROOT
from tests.fake_exchange import PAGE_LIMIT

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def bucket(n: int) -> datetime:
    return T0 + timedelta(minutes=10 * n)


def revision(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "alembic" / "versions" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def registry_venues(conn) -> set[str]:
    return {v for (v,) in conn.execute("SELECT DISTINCT venue FROM core.mq_price_source_registry")}


def test_every_venue_list_is_the_registry(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT core.seed_price_source_registry('all')")
        venues = registry_venues(conn)
        tables = {
            t
            for (t,) in conn.execute(
                "SELECT left(c.relname, -length('_price_10m')) FROM pg_class AS c"
                " JOIN pg_namespace AS n ON c.relnamespace = n.oid"
                " JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = 'data_source_mode'"
                " WHERE n.nspname = 'core' AND c.relkind IN ('r', 'p') AND c.relname LIKE '%\\_price\\_10m'"
            )
        }
        (check,) = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'mq_price_source_registry_venue_check'"
        ).fetchone()
        # One row per venue through the writer: the view has an arm for each table.
        for venue in sorted(venues):
            row = {
                "bucket_start_utc": bucket(0).isoformat(),
                "symbol": "X",
                "open_price_usd": "1",
                "high_price_usd": "1",
                "low_price_usd": "1",
                "close_price_usd": "1",
                "quality_status": "complete",
            }
            upsert_rows(conn, [validate_row(row, 0)], venue)
        in_view = dict(conn.execute("SELECT venue, count(*) FROM core.venue_price_10m GROUP BY venue").fetchall())
        api = {v for (v,) in conn.execute("SELECT DISTINCT venue FROM api.btc_price_venue_10m")}
    assert len(venues) == 6
    assert tables == venues  # created by revision 0002 (frozen)
    assert set(revision("0002_price_tables").VENUES) == venues
    assert set(re.findall(r"'(\w+)'::text", check)) == venues  # revision 0006's CHECK (frozen)
    assert set(VENUE_SPECS) == venues and set(PARSERS) == venues
    assert set(PAGE_LIMIT) == venues  # the tests' fake exchange serves every venue
    assert in_view == dict.fromkeys(venues, 1) and api == venues


CASES = [
    ((100, 110, 90, 105, 1, 1), None),
    ((100, 110, 90, 105, None, None), None),
    ((100, 100, 100, 100, 0, 0), None),
    ((0, 110, 90, 105, 1, 1), "open: non-positive open price 0"),
    ((100, 110, -5, 105, 1, 1), "low: non-positive low price -5"),
    ((100, 110, 90, "NaN", 1, 1), "close: non-finite close price"),
    ((100, 110, 90, None, 1, 1), "close: missing close price"),
    ((100, 99, 90, 95, 1, 1), "high: high 99 below max(open, close, low)"),
    ((100, 110, 90, 111, 1, 1), "high: high 110 below max(open, close, low)"),
    ((100, 110, 101, 105, 1, 1), "low: low 101 above min(open, close, high)"),
    ((100, 110, 90, 105, -1, 1), "volume_base: negative volume_base -1"),
    ((100, 110, 90, 105, 1, "NaN"), "volume_quote: non-finite volume_quote"),
]


def test_the_candle_rule_and_the_frozen_checks_agree(db_url):
    """core.candle_problem is the rule; raw.venue_candles' CHECKs (revision 0002, frozen) never refuse a
    candle it accepts, and every candle they refuse it refuses too."""
    with psycopg.connect(db_url) as conn:
        for i, (values, expected) in enumerate(CASES):
            (got,) = conn.execute(
                "SELECT core.candle_problem(%s::numeric, %s::numeric, %s::numeric, %s::numeric, %s::numeric,"
                " %s::numeric)",
                [None if v is None else str(v) for v in values],
            ).fetchone()
            assert got == expected, values
            if values[3] is None:
                continue  # NOT NULL, not a CHECK
            try:
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO raw.venue_candles (venue, symbol, interval_sec, open_time, open_price, high_price,"
                        " low_price, close_price, volume_base, volume_quote, raw_payload)"
                        " VALUES ('coinbase', 'BTC-USD', 60, %s, %s, %s, %s, %s, %s, %s, '[]')",
                        (bucket(i), *[None if v is None else D(str(v)) for v in values]),
                    )
                refused = False
            except psycopg.errors.CheckViolation:
                refused = True
            assert not (refused and got is None), values


def children(conn, n: int, minutes: range, close: int) -> None:
    conn.execute(
        "INSERT INTO raw.venue_candles (venue, symbol, interval_sec, open_time, open_price, high_price, low_price,"
        " close_price, volume_base, raw_payload, loaded_at)"
        " SELECT 'binance', 'BTCUSDT', 60, %s + m * interval '1 minute', 100, 120, 90, %s, 1, '[]', %s"
        " FROM unnest(%s::int[]) AS m",
        (bucket(n), close, bucket(n + 2), list(minutes)),
    )


def notices(conn) -> list[dict]:
    return [json.loads(n.payload) for n in conn.notifies(timeout=0.5, stop_after=10)]


def test_rest_and_pushed_rows_share_the_writer(db_url):
    """Pushed rows and REST child candles end in core.write_venue_price_10m: a partial REST bucket never
    replaces a collector's row, a complete one does, a pushed row replaces a REST one; every write rewinds
    the composer to its oldest bucket and sends the same NOTIFY; an invalid row writes nothing."""
    pushed = {
        "bucket_start_utc": bucket(2).isoformat(),
        "symbol": "BTCUSDT",
        "open_price_usd": "100",
        "high_price_usd": "130",
        "low_price_usd": "80",
        "close_price_usd": "125",
        "quality_status": "complete",
        "data_source_mode": "websocket",
        "expected_child_candle_count": 10,
        "actual_child_candle_count": 10,
    }
    query = (
        "SELECT bucket_start_utc, close_price_usd, data_source_mode, quality_status FROM core.binance_price_10m"
        " ORDER BY 1"
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("LISTEN venue_price_ready")
        conn.execute(
            "SELECT core.set_checkpoint('btc', 'btc_price_canonical_composer', '10m', NULL, %s, 'ok')", (bucket(9),)
        )

        def composer() -> datetime:
            return conn.execute(
                "SELECT last_bucket_time FROM core.sync_checkpoints WHERE component = 'btc_price_canonical_composer'"
            ).fetchone()[0]

        assert upsert_rows(conn, [validate_row(pushed, 0)]) == 1
        assert conn.execute(query).fetchall() == [(bucket(2), D(125), "websocket", "complete")]
        assert composer() == bucket(2)
        assert notices(conn) == [
            {
                "venue": "binance",
                "from_bucket": "2024-01-01T00:20:00+00:00",
                "to_bucket": "2024-01-01T00:20:00+00:00",
                "rows": 1,
            }
        ]

        # REST: three of ten children in bucket 2 (partial: the collector's row stays), all ten in bucket 3.
        conn.execute(
            "SELECT core.set_checkpoint('btc', 'btc_price_canonical_composer', '10m', NULL, %s, 'ok')", (bucket(9),)
        )
        children(conn, 2, range(3), 101)
        children(conn, 3, range(10), 102)
        (written,) = conn.execute(
            "SELECT core.build_venue_price_10m('binance', 'BTCUSDT', %s, %s, false)", (bucket(2), bucket(3))
        ).fetchone()
        assert written == 1
        assert conn.execute(query).fetchall() == [
            (bucket(2), D(125), "websocket", "complete"),
            (bucket(3), D(102), "rest_child_candles", "complete"),
        ]
        assert composer() == bucket(3)
        assert notices(conn) == [
            {
                "venue": "binance",
                "from_bucket": "2024-01-01T00:30:00+00:00",
                "to_bucket": "2024-01-01T00:30:00+00:00",
                "rows": 1,
            }
        ]

        # The rest of bucket 2's children arrive: the complete REST bucket replaces the collector's row.
        children(conn, 2, range(3, 10), 101)
        conn.execute("SELECT core.build_venue_price_10m('binance', 'BTCUSDT', %s, %s, false)", (bucket(2), bucket(2)))
        assert conn.execute(query).fetchall()[0] == (bucket(2), D(101), "rest_child_candles", "complete")
        assert [n["rows"] for n in notices(conn)] == [1]

        # A pushed row replaces a REST row; an invalid one (high below close) is refused whole.
        upsert_rows(conn, [validate_row({**pushed, "bucket_start_utc": bucket(3).isoformat()}, 0)])
        assert conn.execute(query).fetchall()[1] == (bucket(3), D(125), "websocket", "complete")
        before = conn.execute(query).fetchall()
        bad = [validate_row({**pushed, "bucket_start_utc": bucket(5).isoformat()}, 0)]
        bad.append(validate_row({**pushed, "bucket_start_utc": bucket(6).isoformat(), "high_price_usd": "120"}, 1))
        notices(conn)
        with pytest.raises(PushedRowError, match=r"row 1 field high_price_usd: high 120 below max\(open, close, low\)"):
            upsert_rows(conn, bad)
        assert conn.execute(query).fetchall() == before and notices(conn) == []


def test_a_collector_bucket_is_aggregated_as_rest_candles(db_url):
    """A collector's bucket (its child candles and quality metadata, as `mqnode collector binance` sends it)
    is stored as REST candles are: the children in raw.venue_candles (an invalid one left out), the OHLCV
    by core.venue_price_10m_rows, the collector's metadata kept."""
    kline = {"interval_sec": 60, "open": "100", "high": "120", "low": "90", "volume_base": "2", "trade_count": 3}
    klines = [
        {**kline, "open_time": (bucket(1) + timedelta(minutes=m)).isoformat(), "close": str(100 + m), "raw": {"m": m}}
        for m in range(10)
    ]
    klines[4] = {**klines[4], "high": "80"}  # high below low: left out, as a REST candle would be
    row = {
        "bucket_start_utc": bucket(1).isoformat(),
        "symbol": "BTCUSDT",
        "child_candles": klines,
        "quality_status": "repaired",
        "data_source_mode": "websocket_rest_repair",
        "expected_child_candle_count": 10,
        "actual_child_candle_count": 10,
        "first_receive_time": (bucket(1) + timedelta(minutes=1)).isoformat(),
        "last_receive_time": (bucket(1) + timedelta(minutes=10)).isoformat(),
        "disconnect_count": 1,
        "gap_count": 1,
    }
    columns = (
        "open_price_usd, high_price_usd, low_price_usd, close_price_usd, volume_btc, trade_count, raw_payload,"
        " actual_child_candle_count"
    )
    with psycopg.connect(db_url) as conn:
        assert upsert_rows(conn, [validate_row(row, 0)]) == 1
        stored = conn.execute(
            f"SELECT {columns}, quality_status, data_source_mode, disconnect_count, gap_count, source_updated_at"
            " FROM core.binance_price_10m"
        ).fetchone()
        rest = conn.execute(
            f"SELECT {columns} FROM core.venue_price_10m_rows('binance', 'BTCUSDT', %s, %s)", (bucket(1), bucket(1))
        ).fetchone()
        (children,) = conn.execute("SELECT count(*) FROM raw.venue_candles WHERE venue = 'binance'").fetchone()
        with pytest.raises(PushedRowError, match=r"row 0 field child_candles\[2\]\.close"):
            validate_row({**row, "child_candles": [*klines[:2], {**klines[2], "close": "x"}]}, 0)
    assert children == 9
    assert stored[:8] == rest
    assert stored[:6] == (D(100), D(120), D(90), D(109), D(18), 27)
    assert [p["m"] for p in stored[6]] == [0, 1, 2, 3, 5, 6, 7, 8, 9] and stored[7] == 9
    assert stored[8:] == ("repaired", "websocket_rest_repair", 1, 1, bucket(2))
