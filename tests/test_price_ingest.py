"""Venue fetchers through a fake exchange (real HTTP on loopback) into the venue tables, both engines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
import pytest

from app.market.fetch import VENUE_SPECS, VenueFetcher
from app.market.ingest import ingest_source, registry_rows
from tests.fake_exchange import FakeExchange, minute_of, price

START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def exchange():
    fake = FakeExchange()
    yield fake
    fake.stop()


def configure(conn, exchange: FakeExchange, venue: str, **extra) -> dict:
    with conn.transaction():
        conn.execute("SELECT core.seed_price_source_registry()")
        patch = {
            "api_base": exchange.url,
            "historical_start_utc": START.isoformat(),
            "mode": "local",
            "min_request_interval_sec": 0,
            **extra,
        }
        conn.execute(
            "UPDATE core.mq_price_source_registry SET config_json = config_json || %s::jsonb WHERE source_name = %s",
            (json.dumps(patch), venue),
        )
    (row,) = [r for r in registry_rows(conn, venue)]
    return row[2]


def run(conn, venue, config, now, **fetcher_kw):
    fetcher = VenueFetcher(venue, config, sleep=lambda _s: None, backoff_sec=0.0, **fetcher_kw)
    return ingest_source(conn, venue, True, config, now, fetcher)


def expected_bucket(t: datetime, missing: set[int] = frozenset()) -> tuple:
    minutes = [m for m in range(minute_of(t), minute_of(t) + 10) if m not in missing]
    rows = [price(m) for m in minutes]
    return (
        t,
        D(rows[0][0]),
        max(D(r[1]) for r in rows),
        min(D(r[2]) for r in rows),
        D(rows[-1][3]),
        sum(D(r[4]) for r in rows),
        len(minutes),
    )


def stored(conn, venue: str) -> list[tuple]:
    rows = conn.execute(
        f"SELECT bucket_start_utc, open_price_usd, high_price_usd, low_price_usd, close_price_usd, volume_btc,"
        f" actual_child_candle_count FROM core.{venue}_price_10m ORDER BY 1"
    ).fetchall()
    conn.commit()
    return rows


@pytest.mark.parametrize("venue", list(VENUE_SPECS))  # every registry venue (tests/test_venue_registry.py)
def test_first_run_then_resume_per_venue(db_url, exchange, venue):
    with psycopg.connect(db_url) as conn:
        config = configure(conn, exchange, venue, page_size=60)  # small pages: several requests per run
        report = run(conn, venue, config, START + timedelta(hours=2, minutes=3))
        assert (report.status, report.start, report.end) == ("ingested", START, START + timedelta(hours=2, minutes=3))
        rows = stored(conn, venue)
        # 12 complete buckets, then the forming 02:00 bucket with its 3 minutes so far (a partial row).
        assert rows == [expected_bucket(START + timedelta(minutes=10 * n)) for n in range(12)] + [
            expected_bucket(
                START + timedelta(hours=2), missing=set(range(minute_of(START) + 123, minute_of(START) + 130))
            )
        ]
        (checkpoint, status) = conn.execute(
            "SELECT last_bucket_time, status FROM core.sync_checkpoints WHERE component = %s",
            (f"btc_price_source_{venue}",),
        ).fetchone()
        assert (checkpoint, status) == (START + timedelta(minutes=110), "ok")
        exchange.requests.clear()
        second = run(conn, venue, config, START + timedelta(hours=3))
        assert second.start == START + timedelta(minutes=100)  # checkpoint - 10m
        assert len(stored(conn, venue)) == 18 and stored(conn, venue)[12][-1] == 10  # 02:00 now complete


def test_remote_binance_is_not_fetched_locally(db_url, exchange):
    with psycopg.connect(db_url) as conn:
        config = configure(conn, exchange, "binance", mode="remote")
        assert run(conn, "binance", config, START + timedelta(hours=1)).status == "skipped_remote"
    assert exchange.requests == []


def test_faults_and_bad_candles(db_url, exchange):
    with psycopg.connect(db_url) as conn:
        config = configure(conn, exchange, "okx", page_size=30)
        exchange.faults = ["429", "500", "truncated"]
        base = minute_of(START)
        exchange.bad_minutes = {
            base + 3: "zero",
            base + 14: "negative",
            base + 25: "nan",
            base + 31: "duplicate",
            base + 40: "shuffle",
        }
        report = run(conn, "okx", config, START + timedelta(minutes=60), max_retries=4)
        assert report.status == "ingested" and report.rejected == 3
        rows = stored(conn, "okx")
    # Rejected minutes are simply absent (never a fake row); duplicates and shuffled pages change nothing.
    assert rows == [
        expected_bucket(START, {base + 3}),
        expected_bucket(START + timedelta(minutes=10), {base + 14}),
        expected_bucket(START + timedelta(minutes=20), {base + 25}),
        expected_bucket(START + timedelta(minutes=30)),
        expected_bucket(START + timedelta(minutes=40)),
        expected_bucket(START + timedelta(minutes=50)),
    ]


def test_persistent_failure_marks_the_checkpoint_and_the_next_run_recovers(db_url, exchange):
    with psycopg.connect(db_url) as conn:
        config = configure(conn, exchange, "bitstamp")
        exchange.faults = ["500"] * 3
        report = run(conn, "bitstamp", config, START + timedelta(minutes=30), max_retries=2)
        assert report.status == "error" and "HTTP 500" in report.message
        (status, message) = conn.execute(
            "SELECT status, error_message FROM core.sync_checkpoints WHERE component = 'btc_price_source_bitstamp'"
        ).fetchone()
        conn.commit()
        assert status == "error" and "HTTP 500" in message
        assert stored(conn, "bitstamp") == []
        assert run(conn, "bitstamp", config, START + timedelta(minutes=30)).status == "ingested"
        (status,) = conn.execute(
            "SELECT status FROM core.sync_checkpoints WHERE component = 'btc_price_source_bitstamp'"
        ).fetchone()
        assert status == "ok" and len(stored(conn, "bitstamp")) == 3


def test_prices_ingest_command(server_url, exchange):
    from tests.test_cli import mqnode

    with psycopg.connect(server_url) as conn:
        configure(conn, exchange, "coinbase", historical_start_utc=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
    result = mqnode("prices", "ingest", "--source", "coinbase", "--once", env={"MQNODE_DATABASE_URL": server_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("coinbase: ingested") and "rejected=0" in result.stdout
    with psycopg.connect(server_url) as conn:  # only the fake exchange is ever contacted: other venues off
        conn.execute(
            "UPDATE core.mq_price_source_registry SET enabled = false WHERE source_name NOT IN ('coinbase', 'binance')"
        )
    every = mqnode("prices", "ingest", "--all-enabled", "--once", env={"MQNODE_DATABASE_URL": server_url})
    assert every.returncode == 0, every.stderr
    assert "binance: skipped_remote" in every.stdout and "coinbase: ingested" in every.stdout
    assert "bitstamp" not in every.stdout
    missing = mqnode("prices", "ingest", "--source", "kraken", "--once", env={"MQNODE_DATABASE_URL": server_url})
    assert missing.returncode != 0 and "not in mq_price_source_registry" in missing.stderr


def test_without_auto_historical_backfill_the_first_run_starts_at_the_current_bucket(db_url, exchange):
    with psycopg.connect(db_url) as conn:
        config = configure(conn, exchange, "bitstamp", auto_historical_backfill=False)
        report = run(conn, "bitstamp", config, START + timedelta(days=2, minutes=25))
        assert (report.status, report.start) == ("ingested", START + timedelta(days=2, minutes=20))
        assert [r[0] for r in stored(conn, "bitstamp")] == [START + timedelta(days=2, minutes=20)]


def test_a_stop_request_ends_a_long_first_run_between_windows(db_url, exchange):
    """A stop (SIGTERM in the command) is honoured after the window being written; the next run resumes."""
    with psycopg.connect(db_url) as conn:
        config = configure(conn, exchange, "bitfinex", page_size=60)
        fetcher = VenueFetcher("bitfinex", config, sleep=lambda _s: None)
        windows = []
        report = ingest_source(
            conn, "bitfinex", True, config, START + timedelta(hours=5), fetcher,
            should_stop=lambda: windows.append(1) or len(windows) >= 2,
        )  # fmt: skip
        assert (report.status, report.end) == ("stopped", START + timedelta(hours=2))
        assert len(stored(conn, "bitfinex")) == 12
        resumed = run(conn, "bitfinex", config, START + timedelta(hours=5))
        assert resumed.start == START + timedelta(minutes=100) and len(stored(conn, "bitfinex")) == 30
