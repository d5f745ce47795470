"""The coin-age metrics through the read API, on both engines, over the real early mainnet chain (0-438, sim-node
raw blocks at getblock verbosity 3) with the fixed daily price series of tests/test_coin_age.py: every coin-age
metric is served by GET /api/v1/btc/metrics/{metric} (by metric_name and by table stem) with exactly the rows of
its api view (sql/functions/092_api_coin_age.sql), pages by cursor, as CSV; HODL waves carry each band's share;
the backbone's UTXO columns come through /api/v1/btc/primitive; the per-block UTXO facts through
/api/v1/btc/utxo/blocks (paged by height) and the coverage row through /api/v1/btc/utxo/coverage; the read role
cannot write the new views."""

from __future__ import annotations

import csv
import io
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg import errors

from app.api.app import create_app
from tests.test_api import csv_spelling, items, on_api_connection, view_items, walk
from tests.test_coin_age import ingest, price_and_run_metrics

# (metric_name, table stem, intervals): core.seed_coin_age_metric_registry's metrics.
COIN_AGE_METRICS = (
    ("realized_cap", "realized_cap", ("10m", "1h", "24h")),
    ("sopr", "sopr", ("10m", "1h", "24h")),
    ("coin_days_destroyed", "coin_days", ("10m", "1h", "24h")),
    ("supply_age_bands", "supply_age_bands", ("24h",)),
    ("holder_supply", "holder_supply", ("24h",)),
)
BANDS = ("lt_1d", "1d_1w", "1w_1m", "1m_3m", "3m_6m", "6m_12m", "1y_2y", "2y_3y", "3y_5y", "5y_7y", "7y_10y", "gt_10y")
# A value each metric must have somewhere on the early chain (it is not all NULL).
SOME_VALUE = {
    "realized_cap": "realized_cap_usd",
    "sopr": "sopr",
    "coin_days_destroyed": "cdd",
    "supply_age_bands": "supply_lt_1d_share",
    "holder_supply": "sth_supply_sat",
}
JAN_2009 = {"start": "2009-01-03T00:00:00Z", "end": "2009-01-16T00:00:00Z"}


@pytest.fixture
def coin_age_db(db_url, early_node) -> str:
    ingest(db_url, early_node)
    price_and_run_metrics(db_url)
    return db_url


def test_every_coin_age_metric_route_returns_its_view(coin_age_db):
    with TestClient(app=create_app(coin_age_db, None)) as client:
        for metric, stem, intervals in COIN_AGE_METRICS:
            for interval in intervals:
                view = f"btc_{stem}_{interval}"
                expected = view_items(coin_age_db, f"SELECT * FROM api.{view} ORDER BY bucket_start_utc")
                assert expected, view
                route = f"/api/v1/btc/metrics/{metric}"
                assert items(client, route, interval=interval, limit=10000) == expected, view
                assert items(client, f"/api/v1/btc/metrics/{stem}", interval=interval, limit=10000) == expected
                assert any(row[SOME_VALUE[metric]] is not None for row in expected), view
                # A window and the descending order: the same rows, selected and ordered by bucket_start_utc.
                window = [r for r in expected if JAN_2009["start"] <= r["bucket_start_utc"] < "2009-01-10T00:00:00Z"]
                assert window
                got = items(client, route, interval=interval, start=JAN_2009["start"], end="2009-01-10T00:00:00Z")
                assert got == window
                assert items(client, route, interval=interval, order="desc", limit=10000) == expected[::-1]

            # Exact decimal strings, JSON integers for satoshis.
            row = next(r for r in expected if r[SOME_VALUE[metric]] is not None)
            for column, value in row.items():
                if column.endswith("_sat") and value is not None:
                    assert isinstance(value, int), (metric, column)
                if column.endswith(("_usd", "_share")) or column in ("sopr", "asopr", "mvrv", "nupl", "cdd"):
                    assert value is None or isinstance(value, str), (metric, column)

        # A daily-only metric at another interval: 404 naming its intervals.
        response = client.get("/api/v1/btc/metrics/supply_age_bands", params={"interval": "10m"})
        assert response.status_code == 404 and "its intervals: 24h" in response.json()["detail"]

        # The cursor walks every 10m page of SOPR and ends with exactly the view's rows.
        expected = view_items(coin_age_db, "SELECT * FROM api.btc_sopr_10m ORDER BY bucket_start_utc")
        rows, pages = walk(client, "/api/v1/btc/metrics/sopr", interval="10m", limit=250)
        assert rows == expected and pages == -(-len(expected) // 250) > 1

        # CSV: the view's columns, the JSON rows spelled the same, the next cursor in X-Next-Cursor.
        route = "/api/v1/btc/metrics/realized_cap"
        page = client.get(route, params={"interval": "1h", "limit": 7, **JAN_2009}).json()
        response = client.get(route, params={"interval": "1h", "limit": 7, "format": "csv", **JAN_2009})
        assert response.status_code == 200 and response.headers["content-type"] == "text/csv; charset=utf-8"
        header, *lines = list(csv.reader(io.StringIO(response.text)))
        assert header == list(view_items(coin_age_db, "SELECT * FROM api.btc_realized_cap_1h LIMIT 1")[0])
        assert [dict(zip(header, line, strict=True)) for line in lines] == [csv_spelling(i) for i in page["items"]]
        assert response.headers["x-next-cursor"] == page["next_cursor"]
        daily = client.get(
            "/api/v1/btc/metrics/supply_age_bands", params={"interval": "24h", "format": "csv", "limit": 10000}
        )
        header, *lines = list(csv.reader(io.StringIO(daily.text)))
        assert "x-next-cursor" not in daily.headers
        expected = view_items(coin_age_db, "SELECT * FROM api.btc_supply_age_bands_24h ORDER BY bucket_start_utc")
        assert [dict(zip(header, line, strict=True)) for line in lines] == [csv_spelling(r) for r in expected]

        # Bad parameters on the coin-age routes: 400 naming the parameter.
        for params, named in [
            ({"interval": "5m"}, "interval"),
            ({"limit": "0"}, "limit"),
            ({"start": "2009-01-10T00:00:00Z", "end": "2009-01-09T00:00:00Z"}, "start"),
            ({"cursor": "not-a-cursor"}, "cursor"),
            ({"format": "xml"}, "format"),
        ]:
            response = client.get("/api/v1/btc/metrics/sopr", params=params)
            assert response.status_code == 400 and named in response.json()["detail"], (params, response.text)
        # A cursor of one coin-age listing does not continue another.
        cursor = client.get("/api/v1/btc/metrics/sopr", params={"limit": 1}).json()["next_cursor"]
        response = client.get("/api/v1/btc/metrics/realized_cap", params={"limit": 1, "cursor": cursor})
        assert response.status_code == 400 and "cursor" in response.json()["detail"]

        # The backbone's UTXO columns through the primitive route: the state after each bucket's last block.
        primitive = items(client, "/api/v1/btc/primitive", limit=10000, **JAN_2009)
        with psycopg.connect(coin_age_db) as conn:
            facts = {
                h: (count, size)
                for h, count, size in conn.execute(
                    "SELECT height, utxo_count_total, utxo_bogo_total_bytes FROM core.btc_block_utxo_facts"
                )
            }
        assert primitive
        for row in primitive:
            state = facts[row["best_block_height_last"]]
            assert (row["utxo_count_total"], row["utxo_set_size_total_bytes"]) == state, row["bucket_start_utc"]
            assert row["utxo_size_inc_bytes_10m"] is None or isinstance(row["utxo_size_inc_bytes_10m"], int)
        assert any(row["utxo_count_total"] for row in primitive)


def test_hodl_wave_shares_are_each_band_over_the_utxo_value(coin_age_db):
    rows = view_items(coin_age_db, "SELECT * FROM api.btc_supply_age_bands_24h ORDER BY bucket_start_utc")
    known = [r for r in rows if r["utxo_value_sat"]]
    assert known
    for row in known:
        total = row["utxo_value_sat"]
        assert sum(row[f"supply_{band}_sat"] for band in BANDS) == total, row["bucket_start_utc"]
        for band in BANDS:
            exact = (Decimal(row[f"supply_{band}_sat"]) / Decimal(total)).quantize(Decimal("1e-8"), ROUND_HALF_UP)
            assert Decimal(row[f"supply_{band}_share"]) == exact, (row["bucket_start_utc"], band)
        assert abs(sum(Decimal(row[f"supply_{band}_share"]) for band in BANDS) - 1) <= Decimal("1e-7")
    # A day whose state is unknown has NULL shares, never 0 (none here: the chain is stored from genesis).
    assert all(all(r[f"supply_{b}_share"] is None for b in BANDS) for r in rows if r["utxo_value_sat"] is None)


def test_block_utxo_facts_route_pages_by_height_and_coverage_says_what_is_complete(coin_age_db):
    """GET /api/v1/btc/utxo/blocks serves api.btc_block_utxo_facts keyed by height (range, order, cursor, CSV,
    400s as every series); GET /api/v1/btc/utxo/coverage the one row of api.btc_coin_age_coverage."""
    route = "/api/v1/btc/utxo/blocks"
    expected = view_items(coin_age_db, "SELECT * FROM api.btc_block_utxo_facts ORDER BY height")
    assert [r["height"] for r in expected] == list(range(439))  # the early chain, 0-438, every block
    with TestClient(app=create_app(coin_age_db, None)) as client:
        assert items(client, route, limit=10000) == expected
        assert items(client, route) == expected  # under the default limit of 1000
        assert items(client, route, start_height=100, end_height=170) == expected[100:170]
        assert items(client, route, start_height=430) == expected[430:]
        assert items(client, route, end_height=5, order="desc") == expected[:5][::-1]
        assert items(client, route, order="desc", limit=10000) == expected[::-1]
        # Satoshi amounts and counts as JSON integers, coin-seconds (numeric) as exact decimal strings.
        row = expected[300]
        assert isinstance(row["utxo_value_total_sat"], int) and isinstance(row["utxo_count_total"], int)
        assert isinstance(row["cdd_cumulative_sat_sec"], str) and row["prevouts_known"] is True

        rows, pages = walk(client, route, limit=100)
        assert rows == expected and pages == 5
        rows, pages = walk(client, route, limit=100, order="desc", start_height=50)
        assert rows == expected[50:][::-1] and pages == 4

        response = client.get(route, params={"limit": 7, "start_height": 200, "format": "csv"})
        page = client.get(route, params={"limit": 7, "start_height": 200}).json()
        assert response.status_code == 200 and response.headers["content-type"] == "text/csv; charset=utf-8"
        header, *lines = list(csv.reader(io.StringIO(response.text)))
        assert header == list(expected[0])
        assert [dict(zip(header, line, strict=True)) for line in lines] == [csv_spelling(i) for i in page["items"]]
        assert response.headers["x-next-cursor"] == page["next_cursor"]
        following = client.get(route, params={"limit": 7, "cursor": page["next_cursor"]}).json()
        assert following["items"] == expected[207:214]

        # Bad parameters: 400 naming the parameter; a time cursor does not continue the height listing and a
        # height cursor no time series.
        for params, named in [
            ({"start_height": "-1"}, "start_height"),
            ({"end_height": "x"}, "end_height"),
            ({"start_height": "10", "end_height": "10"}, "start_height"),
            ({"limit": "0"}, "limit"),
            ({"limit": "10001"}, "limit"),
            ({"order": "up"}, "order"),
            ({"format": "xml"}, "format"),
            ({"cursor": "not-a-cursor"}, "cursor"),
            ({"cursor": page["next_cursor"], "order": "desc"}, "cursor"),
        ]:
            response = client.get(route, params=params)
            assert response.status_code == 400 and named in response.json()["detail"], (params, response.text)
        time_cursor = client.get("/api/v1/btc/metrics/sopr", params={"limit": 1}).json()["next_cursor"]
        for path, cursor in [(route, time_cursor), ("/api/v1/btc/metrics/sopr", page["next_cursor"])]:
            response = client.get(path, params={"cursor": cursor})
            assert response.status_code == 400 and "cursor" in response.json()["detail"], (path, response.text)

        coverage = client.get("/api/v1/btc/utxo/coverage")
        assert coverage.status_code == 200, coverage.text
        assert coverage.json() == view_items(coin_age_db, "SELECT * FROM api.btc_coin_age_coverage")[0]
        # Stored from genesis with prevouts throughout: everything complete from the first block.
        assert coverage.json() == {
            "first_stored_height": 0,
            "tip_height": 438,
            "utxo_seed_height": None,
            "supply_seed_sat": None,
            "supply_from_height": 0,
            "utxo_set_from_height": 0,
            "state_complete_from_height": 0,
            "state_complete_through_height": 438,
            "flows_complete_from_height": 0,
            "undated_flow_block_count": 0,
        }


def test_coverage_of_an_empty_database_is_all_null(db_url):
    with TestClient(app=create_app(db_url, None)) as client:
        assert client.get("/api/v1/btc/utxo/blocks").json() == {"items": [], "next_cursor": None}
        coverage = client.get("/api/v1/btc/utxo/coverage").json()
    assert coverage == {**dict.fromkeys(coverage, None), "undated_flow_block_count": 0}
    assert len(coverage) == 10


COIN_AGE_WRITES = [
    "DELETE FROM api.btc_sopr_10m",
    "UPDATE api.btc_realized_cap_24h SET realized_cap_usd = 0",
    "INSERT INTO api.btc_holder_supply_24h (bucket_start_utc) VALUES ('2009-01-01')",
    "DELETE FROM core.btc_coin_days_24h",
    "TRUNCATE core.btc_supply_age_bands_24h",
    "DELETE FROM core.btc_block_spent_by_day",
    "DELETE FROM api.btc_block_utxo_facts",
]


def test_reader_sees_the_coin_age_views_and_cannot_write_them(db_url):
    async def check(conn: psycopg.AsyncConnection) -> Any:
        for statement in COIN_AGE_WRITES:
            with pytest.raises((errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)):
                await conn.execute(statement)
            with pytest.raises(errors.InsufficientPrivilege):
                async with conn.transaction():
                    await conn.execute("SET TRANSACTION READ WRITE")
                    await conn.execute(statement)
        with pytest.raises(errors.InsufficientPrivilege):
            await conn.execute("SELECT * FROM core.btc_block_utxo_facts LIMIT 1")
        counts = {}
        for _, stem, intervals in COIN_AGE_METRICS:
            for interval in intervals:
                cur = await conn.execute(f"SELECT count(*) FROM api.btc_{stem}_{interval}")
                counts[f"btc_{stem}_{interval}"] = (await cur.fetchone())[0]
        return counts

    assert on_api_connection(db_url, check) == {
        f"btc_{stem}_{interval}": 0 for _, stem, intervals in COIN_AGE_METRICS for interval in intervals
    }
    # Every registered coin-age metric names one of these views.
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT core.seed_metric_registry()")
        registered = conn.execute(
            "SELECT output_table FROM core.metric_registry WHERE factor = 'coin_age' ORDER BY 1"
        ).fetchall()
    assert sorted(t for (t,) in registered) == sorted(
        f"btc_{stem}_{interval}" for _, stem, intervals in COIN_AGE_METRICS for interval in intervals
    )
