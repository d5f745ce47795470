"""A small database where every stage has run: blocks -> 10m backbone -> venue rows -> canonical price ->
rollups -> metrics. Deterministic, two days and a bit, for tests of the read path (API, dashboards).

Blocks: one every 9 minutes of header time from 2024-01-01 00:00 UTC (median time 3 minutes earlier),
heights 1..N after genesis, each with a coinbase and `tx_per_block` paying known fees. Venues: bitstamp
and coinbase report every bucket except every 7th (gaps), okx (quoted in USDT, at a USDT/USD of exactly 1
from bitstamp usdtusd) every third bucket 1% higher; bucket 5 has
no venue at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from app.metrics import run_metrics
from tests.chainrows import Block, Tx, insert_blocks

T0 = datetime(2024, 1, 1, tzinfo=UTC)
BTC = 100_000_000
VENUE_SYMBOL = {"bitstamp": "btcusd", "coinbase": "BTC-USD", "okx": "BTC-USDT"}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def chain(blocks: int = 340, tx_per_block: int = 3) -> list[Block]:
    out = [Block(0, at(0), at(0), 50 * BTC)]
    for h in range(1, blocks + 1):
        txs = [
            Tx(BTC + 1000 * i, fee_sat=100 * h + 7 * i, vsize=150 + (h * 13 + i * 7) % 200, segwit=i % 2 == 0)
            for i in range(tx_per_block)
        ]
        fees = sum(t.fee_sat for t in txs)
        out.append(Block(h, at(9 * h), at(9 * h - 3), 50 * BTC + fees, txs))
    return out


def venue_rows(conn: psycopg.Connection, buckets: int) -> None:
    with conn.transaction(), conn.cursor() as cur:
        for n in range(buckets):
            if n == 5:
                continue
            b = T0 + timedelta(minutes=10 * n)
            base = 40000 + (n % 50) * 10
            for venue, symbol in VENUE_SYMBOL.items():
                if venue == "okx" and n % 3:
                    continue
                if venue != "okx" and n % 7 == 6:
                    continue
                bump = 1.01 if venue == "okx" else 1.0
                o, c = round(base * bump, 2), round((base + 5) * bump, 2)
                cur.execute(
                    f"INSERT INTO core.{venue}_price_10m (bucket_start_utc, symbol, open_price_usd, high_price_usd,"
                    " low_price_usd, close_price_usd, volume_btc, volume_usd, source_updated_at, quality_status,"
                    " data_source_mode, expected_child_candle_count, actual_child_candle_count)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'complete', 'rest_child_candles', 10, 10)",
                    (b, symbol, o, c + 20, o - 20, c, 1 + n % 4, (1 + n % 4) * c, b + timedelta(minutes=11)),
                )
            if n % 3 == 0:  # okx quotes USDT: the direct USDT/USD market (bitstamp usdtusd) at exactly 1 USD
                cur.execute(
                    "INSERT INTO core.bitstamp_price_10m (bucket_start_utc, symbol, open_price_usd, high_price_usd,"
                    " low_price_usd, close_price_usd, volume_btc, source_updated_at, quality_status, data_source_mode)"
                    " VALUES (%s, 'usdtusd', 1, 1, 1, 1, 1000, %s, 'complete', 'rest_child_candles')",
                    (b, b + timedelta(minutes=11)),
                )
        cur.execute("UPDATE core.mq_price_source_registry SET enabled = true WHERE source_name = 'bitstamp_usdtusd'")


def populate(url: str, blocks: int = 340) -> None:
    """Run every stage over the hand-made chain and venue rows (both engines; one connection at a time)."""
    with psycopg.connect(url) as conn:
        with conn.transaction():
            conn.execute("SELECT core.seed_price_source_registry()")
            conn.execute("SELECT core.seed_metric_registry()")
        insert_blocks(conn, chain(blocks))
        with conn.transaction():
            conn.execute("SELECT * FROM core.build_primitive_10m()")
        (buckets,) = conn.execute("SELECT count(*) FROM core.btc_primitive_10m").fetchone()
        conn.commit()
        venue_rows(conn, buckets)
        with conn.transaction():
            conn.execute("SELECT * FROM core.compose_btc_price_10m()")
    with psycopg.connect(url, autocommit=True) as conn:
        for (name,) in conn.execute("SELECT rollup_name FROM core.rollup_registry ORDER BY refresh_order").fetchall():
            conn.execute("CALL core.refresh_rollup(%s)", (name,))
    with psycopg.connect(url) as conn:
        steps = run_metrics(conn)  # what the metrics lane runs
    failed = [s for s in steps if s.status not in ("ok", "up_to_date")]
    assert not failed, failed
