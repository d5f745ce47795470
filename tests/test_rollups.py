"""1h/24h rollups against the data contract's rules, on hand-made and synthetic data, on both engines:
every flow is the sum of its parts, states are the last part's, means come from summed parts, prices
open first / close last priced bucket; upstream rewrites reach the rollups; both engines agree."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import psycopg

from bench.build import generate
from tests.pipeline import T0, populate

FLOWS = [
    ("block_count", "block_count"),
    ("issued_sat_10m", "issued_sat"),
    ("fees_sat_10m", "fees_sat"),
    ("total_fee_sat_10m", "total_fee_sat"),
    ("miner_revenue_sat_10m", "miner_revenue_sat"),
    ("total_out_sat_10m", "total_out_sat"),
    ("transferred_sat_10m", "transferred_sat"),
    ("transferred_btc_10m", "transferred_btc"),
    ("tx_count_10m", "tx_count"),
    ("non_coinbase_tx_count_10m", "non_coinbase_tx_count"),
    ("input_count_10m", "input_count"),
    ("output_count_10m", "output_count"),
    ("segwit_tx_count_10m", "segwit_tx_count"),
    ("block_size_total_bytes_10m", "block_size_total_bytes"),
    ("block_weight_total_wu_10m", "block_weight_total_wu"),
    ("block_vsize_total_vb_10m", "block_vsize_total_vb"),
    ("tx_size_total_bytes_10m", "tx_size_total_bytes"),
    ("tx_vsize_total_vb_10m", "tx_vsize_total_vb"),
    ("sw_total_size_bytes_10m", "sw_total_size_bytes"),
    ("sw_total_weight_wu_10m", "sw_total_weight_wu"),
    ("utxo_increase_10m", "utxo_increase"),
    ("created_output_count_10m", "created_output_count"),
    ("spent_output_count_10m", "spent_output_count"),
    ("fee_observed_tx_count_10m", "fee_observed_tx_count"),
    ("fee_observed_sat_10m", "fee_observed_sat"),
    ("fee_observed_vsize_vb_10m", "fee_observed_vsize_vb"),
    ("block_interval_count_10m", "block_interval_count"),
    ("block_interval_sum_sec_10m", "block_interval_sum_sec"),
]
STATES = ["supply_total_sat", "difficulty_last", "chainwork_last", "best_block_height_last", "halving_epoch"]
# mean = summed numerator / summed denominator (rollup names)
MEANS = [
    ("block_interval_mean_sec", "block_interval_sum_sec", "block_interval_count"),
    ("avg_fee_sat", "fees_sat", "non_coinbase_tx_count"),
    ("avg_feerate_sat_vb", "fee_observed_sat", "fee_observed_vsize_vb"),
    ("segwit_share", "segwit_tx_count", "non_coinbase_tx_count"),
    ("tx_size_mean_bytes", "tx_size_total_bytes", "tx_count"),
    ("block_size_mean_bytes", "block_size_total_bytes", "block_count"),
    ("block_weight_mean_wu", "block_weight_total_wu", "block_count"),
    ("block_reward_sat_avg", "miner_revenue_sat", "block_count"),
]
PRICE_TABLES = {"1h": "mq_btc_price_1h", "24h": "mq_btc_price_24h"}


def r8(x: Decimal) -> Decimal:
    return x.quantize(Decimal("1E-8"), rounding=ROUND_HALF_UP)


def dict_rows(conn: psycopg.Connection, table: str, schema: str = "core") -> list[dict]:
    cur = conn.execute(f"SELECT * FROM {schema}.{table} ORDER BY bucket_start_utc")
    names = [d.name for d in cur.description]
    out = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    conn.commit()
    return out


def group(rows: list[dict], width: timedelta) -> dict[datetime, list[dict]]:
    out: dict[datetime, list[dict]] = {}
    for r in rows:
        start = T0 + ((r["bucket_start_utc"] - T0) // width) * width
        out.setdefault(start, []).append(r)
    return out


def first(values):
    return next((v for v in values if v is not None), None)


def expected_primitive(parts: list[dict], from_10m: bool, period_sec: int) -> dict:
    """What one rollup row must be, from its parts (10m rows, or 1h rows for a day)."""
    e: dict = {}
    for tenm, name in FLOWS:
        e[name] = sum(p[tenm if from_10m else name] for p in parts)
    e["bucket_count_10m"] = len(parts) if from_10m else sum(p["bucket_count_10m"] for p in parts)
    for name in STATES:
        e[name] = parts[-1][name]
    for mean, num, den in MEANS:
        e[mean] = r8(Decimal(e[num]) / e[den]) if e[den] else None
    e["tx_rate_per_sec"] = r8(Decimal(e["tx_count"]) / period_sec)
    lo, hi = (
        ("min_feerate_sat_vb_10m", "max_feerate_sat_vb_10m")
        if from_10m
        else ("min_feerate_sat_vb", "max_feerate_sat_vb")
    )
    e["min_feerate_sat_vb"] = min((p[lo] for p in parts if p[lo] is not None), default=None)
    e["max_feerate_sat_vb"] = max((p[hi] for p in parts if p[hi] is not None), default=None)
    e["open_price_usd"] = first(p["open_price_usd"] for p in parts)
    e["close_price_usd"] = first(p["close_price_usd"] for p in reversed(parts))
    e["high_price_usd"] = max((p["high_price_usd"] for p in parts if p["high_price_usd"] is not None), default=None)
    e["low_price_usd"] = min((p["low_price_usd"] for p in parts if p["low_price_usd"] is not None), default=None)
    close = e["close_price_usd"]
    e["market_cap_usd"] = None if close is None else r8(Decimal(e["supply_total_sat"]) / 100000000 * close)
    return e


def expected_price(parts: list[dict], from_10m: bool) -> dict:
    return {
        "bucket_count_10m": len(parts) if from_10m else sum(p["bucket_count_10m"] for p in parts),
        "priced_bucket_count": sum(
            (1 if p["close_price_usd"] is not None else 0) if from_10m else p["priced_bucket_count"] for p in parts
        ),
        "open_price_usd": first(p["open_price_usd"] for p in parts),
        "close_price_usd": first(p["close_price_usd"] for p in reversed(parts)),
        "high_price_usd": max((p["high_price_usd"] for p in parts if p["high_price_usd"] is not None), default=None),
        "low_price_usd": min((p["low_price_usd"] for p in parts if p["low_price_usd"] is not None), default=None),
        "volume_btc": sum((p["volume_btc"] for p in parts if p["volume_btc"] is not None), start=Decimal(0))
        if any(p["volume_btc"] is not None for p in parts)
        else None,
    }


def check_rollups(url: str) -> int:
    """Assert every rollup row against its parts; returns the number of rows checked."""
    checked = 0
    with psycopg.connect(url) as conn:
        tenm = dict_rows(conn, "btc_primitive_10m")
        # The 1h/24h backbone as read (api): chain rollups with the price rollups' prices joined.
        hours = dict_rows(conn, "btc_primitive_1h", "api")
        days = dict_rows(conn, "btc_primitive_24h", "api")
        price10 = dict_rows(conn, "mq_btc_price_10m")
        price1h = dict_rows(conn, "mq_btc_price_1h")
        price24 = dict_rows(conn, "mq_btc_price_24h")
    for rolled, parts_by, from_10m, sec in (
        (hours, group(tenm, timedelta(hours=1)), True, 3600),
        (days, group(hours, timedelta(days=1)), False, 86400),
        (days, group(tenm, timedelta(days=1)), True, 86400),  # a day straight from its 10m rows too
    ):
        assert [r["bucket_start_utc"] for r in rolled] == sorted(parts_by)
        for row in rolled:
            expected = expected_primitive(parts_by[row["bucket_start_utc"]], from_10m, sec)
            got = {k: row[k] for k in expected}
            assert got == expected, row["bucket_start_utc"]
            checked += 1
    for rolled, parts_by, from_10m in (
        (price1h, group(price10, timedelta(hours=1)), True),
        (price24, group(price1h, timedelta(days=1)), False),
    ):
        assert [r["bucket_start_utc"] for r in rolled] == sorted(parts_by)
        for row in rolled:
            expected = expected_price(parts_by[row["bucket_start_utc"]], from_10m)
            assert {k: row[k] for k in expected} == expected, row["bucket_start_utc"]
            checked += 1
    return checked


def refresh(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for (name,) in conn.execute("SELECT rollup_name FROM core.rollup_registry ORDER BY refresh_order").fetchall():
            conn.execute("CALL core.refresh_rollup(%s)", (name,))


def test_rollups_on_handmade_data(db_url):
    populate(db_url)  # two days and a bit: partial last day, a bucket with no price, gaps in venues
    assert check_rollups(db_url) == 51 + 3 + 3 + 51 + 3


def test_rollups_on_synthetic_data(db_url):
    """Two days of synthetic blocks (one every 600 s, 20 tx each) generated in SQL, no prices at all."""
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            generate(conn, 840000, 840000 + 2 * 144 - 1, 20)
            conn.execute("SELECT core.set_checkpoint('btc', 'btc_raw_block_ingestion', 'block', 840287, NULL)")
            conn.execute("SELECT core.build_primitive_block(840000, 840287)")
        with conn.transaction():
            conn.execute("SELECT * FROM core.build_primitive_10m()")
            conn.execute("SELECT * FROM core.compose_btc_price_10m()")
    refresh(db_url)
    with psycopg.connect(db_url) as conn:
        (hours, days, priced) = conn.execute(
            "SELECT (SELECT count(*) FROM core.btc_primitive_1h), (SELECT count(*) FROM core.btc_primitive_24h),"
            " (SELECT count(*) FROM core.mq_btc_price_1h WHERE close_price_usd IS NOT NULL)"
        ).fetchone()
    assert (hours, days, priced) == (48, 2, 0)
    check_rollups(db_url)


def test_upstream_rewrites_reach_rollups_and_metrics(db_url):
    """Bucket 5 had no venue row; a late Binance row arrives through the pushed-rows path. The composer,
    the hour and day holding bucket 5, and the metrics of that hour are all redone."""
    from app.market.pushed_rows import upsert_rows, validate_row
    from app.metrics import run_metrics

    populate(db_url)
    late = T0 + timedelta(minutes=50)
    with psycopg.connect(db_url) as conn:
        before = conn.execute(
            "SELECT priced_bucket_count FROM core.mq_btc_price_1h WHERE bucket_start_utc = %s", (T0,)
        ).fetchone()
        conn.commit()
        assert before == (5,)
        row = {
            "bucket_start_utc": late.isoformat(),
            "symbol": "BTCUSDT",
            "open_price_usd": "40100",
            "high_price_usd": "40200",
            "low_price_usd": "40000",
            "close_price_usd": "40150",
            "volume_btc": "2",
            "quality_status": "complete",
        }
        with conn.transaction():  # Binance quotes USDT: its bucket needs a USDT/USD rate (else: no_usd_rate)
            conn.execute(
                "INSERT INTO core.bitstamp_price_10m (bucket_start_utc, symbol, open_price_usd, high_price_usd,"
                " low_price_usd, close_price_usd, volume_btc, source_updated_at, quality_status, data_source_mode)"
                " VALUES (%s, 'usdtusd', 1, 1, 1, 1, 1000, %s, 'complete', 'rest_child_candles')",
                (late, late + timedelta(minutes=11)),
            )
        upsert_rows(conn, [validate_row(row, 0)])
        with conn.transaction():
            (start,) = conn.execute("SELECT from_bucket FROM core.compose_btc_price_10m()").fetchone()
        assert start == late
    refresh(db_url)
    with psycopg.connect(db_url) as conn:
        run_metrics(conn)
        hour = conn.execute(
            "SELECT priced_bucket_count, close_price_usd FROM core.mq_btc_price_1h WHERE bucket_start_utc = %s",
            (T0,),
        ).fetchone()
        cap = conn.execute("SELECT market_cap_usd FROM core.btc_market_cap_10m WHERE bucket_start_utc = %s", (late,))
        assert hour == (6, Decimal("40150.00000000")) and cap.fetchone()[0] is not None
        conn.commit()
    check_rollups(db_url)


def test_engines_agree_on_rollups_and_metrics(pg_url, ts_url):
    tables = ["btc_primitive_1h", "btc_primitive_24h", "mq_btc_price_1h", "mq_btc_price_24h"] + [
        f"btc_{s}_{iv}"
        for s in ("market_cap", "nvt", "miner_revenue", "fee_metrics", "hash_rate")
        for iv in ("10m", "1h", "24h")
    ]
    snapshots = []
    for url in (pg_url, ts_url):
        populate(url)
        with psycopg.connect(url) as conn:
            snapshots.append(
                {t: conn.execute(f"SELECT * FROM core.{t} ORDER BY bucket_start_utc").fetchall() for t in tables}
            )
    assert all(snapshots[0][t] for t in tables)
    assert snapshots[0] == snapshots[1]
