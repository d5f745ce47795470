"""Registry-driven metrics on both engines: exact rows on hand-made data, dependency bounds, isolation of a
failing metric, identical re-runs, and 1h/24h sums of parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
import pytest

from app.metrics import run_metrics
from tests.chainrows import Block, Tx, insert_blocks
from tests.pipeline import populate

T0 = datetime(2024, 1, 1, tzinfo=UTC)
BTC = 100_000_000


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def handmade(conn: psycopg.Connection) -> None:
    """Buckets 00:00 (genesis + block 1), 00:10 (empty), 00:20 (block 2); prices at 00:00 and 00:20 only."""
    insert_blocks(
        conn,
        [
            Block(0, at(0), at(0), 50 * BTC),  # genesis: state only, issues nothing
            # fees 1000 (vsize 100 -> 10 sat/vB) and 2000 (vsize 400 -> 5 sat/vB); difficulty 2 (1 + height)
            Block(1, at(9), at(5), 50 * BTC + 3000, [Tx(2 * BTC, fee_sat=1000, vsize=100), Tx(5 * BTC, 2000, 400)]),
            # fee 500 (vsize 250 -> 2 sat/vB); difficulty 3
            Block(2, at(30), at(25), 50 * BTC + 500, [Tx(1 * BTC, fee_sat=500, vsize=250)]),
        ],
    )
    with conn.transaction():
        conn.execute("SELECT core.seed_price_source_registry()")
        conn.execute("SELECT core.seed_metric_registry()")
        conn.execute("SELECT * FROM core.build_primitive_10m(%s)", (at(20),))
        for minute, price in ((0, 40000), (20, 41000)):
            conn.execute(
                "INSERT INTO core.bitstamp_price_10m (bucket_start_utc, symbol, open_price_usd, high_price_usd,"
                " low_price_usd, close_price_usd, volume_btc, source_updated_at, quality_status, data_source_mode)"
                " VALUES (%s, 'btcusd', %s, %s, %s, %s, 1, %s, 'complete', 'test')",
                (at(minute), price, price, price, price, at(minute + 11)),
            )
        conn.execute("SELECT * FROM core.compose_btc_price_10m()")


def refresh_rollups(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for (name,) in conn.execute("SELECT rollup_name FROM core.rollup_registry ORDER BY refresh_order").fetchall():
            conn.execute("CALL core.refresh_rollup(%s)", (name,))


def rows(conn: psycopg.Connection, table: str) -> list[tuple]:
    out = conn.execute(f"SELECT * FROM core.{table} ORDER BY bucket_start_utc").fetchall()
    conn.commit()
    return out


METRIC_TABLES = [
    f"btc_{stem}_{iv}"
    for stem in ("market_cap", "nvt", "miner_revenue", "fee_metrics", "hash_rate")
    for iv in ("10m", "1h", "24h")
]


def test_exact_rows_on_handmade_data(db_url):
    with psycopg.connect(db_url) as conn:
        handmade(conn)
    refresh_rollups(db_url)
    with psycopg.connect(db_url) as conn:
        steps = run_metrics(conn)
        assert {(s.metric_name, s.interval, s.status) for s in steps} == {
            (m, iv, "ok")
            for m in ("market_cap_usd", "nvt_raw", "miner_revenue", "fee_metrics", "hash_rate")
            for iv in ("10m", "1h", "24h")
        } | {  # the coin-age metrics (tests/test_coin_age.py checks their values; here: no prevouts, NULL)
            (m, iv, "ok") for m in ("realized_cap", "sopr", "coin_days_destroyed") for iv in ("10m", "1h", "24h")
        } | {("supply_age_bands", "24h", "ok"), ("holder_supply", "24h", "ok")}
        b0, b1, b2 = at(0), at(10), at(20)
        assert rows(conn, "btc_market_cap_10m") == [
            (b0, 50 * BTC, D(40000), D("2000000.00000000")),
            (b1, 50 * BTC, None, None),  # no price: NULL, never 0
            (b2, 100 * BTC, D(41000), D("4100000.00000000")),
        ]
        assert rows(conn, "btc_nvt_10m") == [
            # 7 BTC of non-coinbase outputs x 40,000 = 280,000 USD; 2,000,000 / 280,000
            (b0, D("2000000.00000000"), 7 * BTC, D(40000), D("280000.00000000"), D("7.14285714")),
            (b1, None, 0, None, None, None),
            (b2, D("4100000.00000000"), 1 * BTC, D(41000), D("41000.00000000"), D("100.00000000")),
        ]
        assert rows(conn, "btc_miner_revenue_10m") == [
            (b0, 1, 50 * BTC + 3000, 50 * BTC, 3000, D("0.00000060"), D(40000), D("2000001.20000000"),
             D("2000000.00000000"), D("1.20000000")),
            (b1, 0, 0, 0, 0, None, None, None, None, None),
            (b2, 1, 50 * BTC + 500, 50 * BTC, 500, D("0.00000010"), D(41000), D("2050000.20500000"),
             D("2050000.00000000"), D("0.20500000")),
        ]  # fmt: skip
        assert rows(conn, "btc_fee_metrics_10m") == [
            # 2 tx, fees 1000/2000 at 10/5 sat/vB: mean 1500, median 1500, feerate 3000/500 = 6, median 7.5
            # fee p10/p25/p75/p90 at ranks ceil(2p) = 1, 1, 2, 2; Core feerates 5 (1600 WU), 10 (400 WU):
            # cumulative 1600 reaches 10/25/75 % of 2000 WU, 90 % (1800) needs the 10.
            (b0, 2, 3000, D("1500.00000000"), D("1500.00000000"), 2, D("6.00000000"), D("7.50000000"),
             D("5.00000000"), D("10.00000000"), D("0.00000060"), D(40000), D("1.20000000"), D("0.60000000"),
             D("0.60000000"), 1000, 1000, 2000, 2000, 5, 5, 5, 10),
            (b1, 0, 0, None, None, 0, None, None, None, None, None, None, None, None, None,
             None, None, None, None, None, None, None, None),
            (b2, 1, 500, D("500.00000000"), D("500.00000000"), 1, D("2.00000000"), D("2.00000000"),
             D("2.00000000"), D("2.00000000"), D("0.00000010"), D(41000), D("0.20500000"), D("0.20500000"),
             D("0.20500000"), 500, 500, 500, 500, 2, 2, 2, 2),
        ]  # fmt: skip
        assert rows(conn, "btc_hash_rate_10m") == [
            # difficulty 2 x 2^32 / 600 s; an empty bucket has no estimate
            (b0, 1, 600, D("2.00000000"), D("14316557.65"), D("0E-8")),
            (b1, 0, 600, None, None, None),
            (b2, 1, 600, D("3.00000000"), D("21474836.48"), D("0E-8")),
        ]
        # The hour holds all three buckets: flows summed, supply of the last bucket, close of the last priced one.
        assert rows(conn, "btc_market_cap_1h") == [(b0, 100 * BTC, D(41000), D("4100000.00000000"))]
        assert rows(conn, "btc_nvt_1h") == [
            (b0, D("4100000.00000000"), 8 * BTC, D(41000), D("328000.00000000"), D("12.50000000"))
        ]
        assert rows(conn, "btc_miner_revenue_1h") == [
            (b0, 2, 100 * BTC + 3500, 100 * BTC, 3500, D("0.00000035"), D(41000), D("4100001.43500000"),
             D("4100000.00000000"), D("1.43500000"))
        ]  # fmt: skip
        # Median of the hour's fees 500, 1000, 2000 = 1000, of its feerates 2, 5, 10 = 5 (merged from the two
        # blocks' fee facts). Fee percentiles at ranks ceil(3p) = 1, 1, 3, 3; Core feerates 2 (1000 WU),
        # 5 (1600 WU), 10 (400 WU): cumulative 1000 / 2600 / 3000 against 300, 750, 2250, 2700.
        assert rows(conn, "btc_fee_metrics_1h") == [
            (b0, 3, 3500, D("1166.66666667"), D("1000.00000000"), 3, D("4.66666667"), D("5.00000000"),
             D("2.00000000"), D("10.00000000"), D("0.00000035"), D(41000), D("1.43500000"), D("0.47833333"),
             D("0.41000000"), 500, 500, 2000, 2000, 2, 2, 5, 10)
        ]  # fmt: skip
        assert rows(conn, "btc_hash_rate_1h") == [(b0, 2, 3600, D("2.50000000"), D("5965232.36"), D("0E-8"))]
        assert rows(conn, "btc_hash_rate_24h") == [(b0, 2, 86400, D("2.50000000"), D("248551.35"), D("0E-8"))]
        checkpoints = conn.execute(
            "SELECT component, last_bucket_time, status FROM core.sync_checkpoints"
            " WHERE component LIKE 'btc_metric_%%' ORDER BY 1"
        ).fetchall()
        assert len(checkpoints) == 26 and {c[2] for c in checkpoints} == {"ok"}  # 15 + the coin-age 11
        assert dict((c[0], c[1]) for c in checkpoints)["btc_metric_nvt_raw_10m"] == b2


def test_metrics_never_run_past_a_lagging_dependency(db_url):
    """The composer has priced only up to 00:10; hash_rate (no price dependency) reaches 00:20."""
    with psycopg.connect(db_url) as conn:
        handmade(conn)
        with conn.transaction():
            conn.execute(
                "UPDATE core.sync_checkpoints SET last_bucket_time = %s"
                " WHERE component = 'btc_price_canonical_composer'",
                (at(10),),
            )
        steps = {(s.metric_name, s.interval): s for s in run_metrics(conn, interval="10m")}
        assert steps[("market_cap_usd", "10m")].to_bucket == at(10)
        assert steps[("nvt_raw", "10m")].to_bucket == at(10)  # bounded by market_cap_usd's checkpoint
        assert steps[("hash_rate", "10m")].to_bucket == at(20)
        assert [r[0] for r in rows(conn, "btc_market_cap_10m")] == [at(0), at(10)]
        assert [r[0] for r in rows(conn, "btc_hash_rate_10m")] == [at(0), at(10), at(20)]
        # 1h metrics wait for rollups that never ran.
        hourly = run_metrics(conn, interval="1h")
        assert {s.status for s in hourly} == {"waiting"}
        assert "rollup_btc_primitive_1h:1h" in hourly[0].message
        assert rows(conn, "btc_market_cap_1h") == []
        # The dependency catches up; the metric follows on the next run.
        with conn.transaction():
            conn.execute("SELECT * FROM core.compose_btc_price_10m()")
        steps = {(s.metric_name, s.interval): s for s in run_metrics(conn, interval="10m")}
        assert steps[("market_cap_usd", "10m")].to_bucket == at(20)
        assert [r[0] for r in rows(conn, "btc_market_cap_10m")] == [at(0), at(10), at(20)]


def test_a_failing_metric_leaves_the_others_complete(db_url):
    with psycopg.connect(db_url) as conn:
        handmade(conn)
        with conn.transaction():
            conn.execute(
                "CREATE OR REPLACE FUNCTION core.metric_test_broken(text, timestamptz, timestamptz, text)"
                " RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN"
                " INSERT INTO core.btc_market_cap_10m (bucket_start_utc) VALUES ('2030-01-01');"
                " RAISE EXCEPTION 'deliberately broken'; END $$"
            )
            conn.execute(
                'INSERT INTO core.metric_registry (metric_name, factor, "interval", sql_function, output_table,'
                " dependencies) VALUES ('aaa_broken', 'test', '10m', 'core.metric_test_broken', 'btc_broken_10m',"
                " '{btc_primitive_10m_builder:10m}')"
            )
        steps = {s.metric_name: s for s in run_metrics(conn, interval="10m")}
        assert steps["aaa_broken"].status == "error" and "deliberately broken" in steps["aaa_broken"].message
        assert {s.status for name, s in steps.items() if name != "aaa_broken"} == {"ok"}
        assert len(rows(conn, "btc_market_cap_10m")) == 3  # the broken metric's write was rolled back
        (status, message) = conn.execute(
            "SELECT status, error_message FROM core.sync_checkpoints WHERE component = 'btc_metric_aaa_broken_10m'"
        ).fetchone()
        conn.commit()
        assert status == "error" and "deliberately broken" in message
        health = conn.execute("SELECT checkpoints_in_error, status FROM api.btc_health").fetchone()
        conn.commit()
        assert health[1] == "degraded" and health[0][0]["component"] == "btc_metric_aaa_broken_10m"


def test_reruns_are_identical_and_hourly_flows_are_sums_of_parts(db_url):
    populate(db_url)
    with psycopg.connect(db_url) as conn:
        before = {t: rows(conn, t) for t in METRIC_TABLES}
        with conn.transaction():  # replay everything from the start
            conn.execute("DELETE FROM core.sync_checkpoints WHERE component LIKE 'btc_metric_%%'")
        run_metrics(conn, max_periods=50)  # in small chunks this time
        assert {t: rows(conn, t) for t in METRIC_TABLES} == before
        tenm = before["btc_miner_revenue_10m"]
        for hour in before["btc_miner_revenue_1h"]:
            parts = [r for r in tenm if hour[0] <= r[0] < hour[0] + timedelta(hours=1)]
            assert hour[1:5] == tuple(sum(p[i] for p in parts) for i in range(1, 5)), hour[0]
        for day in before["btc_hash_rate_24h"]:
            parts = [r for r in before["btc_hash_rate_1h"] if day[0] <= r[0] < day[0] + timedelta(days=1)]
            assert day[1] == sum(p[1] for p in parts)


def test_metrics_command(server_url):
    from tests.test_cli import mqnode

    with psycopg.connect(server_url) as conn:
        handmade(conn)
    env = {"MQNODE_DATABASE_URL": server_url}
    first = mqnode("metrics", "run", "--once", "--interval", "10m", env=env)
    assert first.returncode == 0, first.stderr
    assert "market_cap_usd 10m: ok 2024-01-01 00:00:00+00:00 .. 2024-01-01 00:20:00+00:00 rows=3" in first.stdout
    unknown = mqnode("metrics", "run", "--once", "--metric", "nope", env=env)
    assert unknown.returncode != 0 and "not in metric_registry" in unknown.stderr
    assert "0 row(s) written" in mqnode("metrics", "seed", env=env).stdout
    assert "26 row(s) written" in mqnode("metrics", "seed", "--reset", "all", env=env).stdout


@pytest.mark.parametrize("interval", ["10m", "1h", "24h"])
def test_unknown_interval_is_refused(db_url, interval):
    with psycopg.connect(db_url) as conn, pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT * FROM core.run_metric('market_cap_usd', %s)", (interval + "x",))
