"""Price-lane benchmark: one year of 10m buckets (52,560) x the registry's BTC markets (the six venues) of
synthetic 1m child candles, plus the USDT/USD market (bitstamp usdtusd) the three USDT venues are converted at.

Prints the time of the SQL venue 10m build (core.build_venue_price_10m, all markets) and of the full
canonical compose (core.compose_btc_price_10m) by each method, with rows/s and each method's time as a
ratio of volume_weighted_ohlc_v1's measured in the same run (the machine is shared: compare ratios).
Usage: python -m bench.compose [--days 365] [--method volume_weighted_ohlc_v1 ...]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import psycopg

from bench.common import bench_database, machine_line

METHODS = ("volume_weighted_ohlc_v1", "median_filtered_v1", "reference_rate_v1")
# The markets, as the registry lists them: its enabled BTC markets, and the direct USDT/USD market it
# seeds as bitstamp_usdtusd (enabled here), near 1 USD.
MARKETS = """
SELECT venue, symbol FROM core.mq_price_source_registry WHERE enabled AND base_currency = 'BTC' ORDER BY priority_rank
"""
USDT_SOURCE = "bitstamp_usdtusd"
USDT = """
INSERT INTO raw.venue_candles (venue, symbol, interval_sec, open_time, open_price, high_price, low_price,
                               close_price, volume_base, volume_quote, trade_count, raw_payload, loaded_at)
SELECT r.venue, r.symbol, 60, t, p, p + 0.0002, p - 0.0002, p, 1000, 1000 * p, 5, '[]'::jsonb,
       t + interval '2 minutes'
FROM core.mq_price_source_registry AS r, (
    SELECT t, round((1 + 0.001 * sin(n / 700.0))::numeric, 6) AS p
    FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute', interval '1 minute')
         WITH ORDINALITY AS g (t, n)
) AS s
WHERE r.source_name = %(source)s
"""

# A random walk per venue around a shared path, generated in SQL (one row per minute per venue).
GENERATE = """
INSERT INTO raw.venue_candles (venue, symbol, interval_sec, open_time, open_price, high_price, low_price,
                               close_price, volume_base, volume_quote, trade_count, raw_payload, loaded_at)
SELECT %(venue)s, %(symbol)s, 60, t,
       p, p + 3 + (n %% 5), p - 3 - (n %% 3), p + ((n * 7) %% 5) - 2,
       1 + (n %% 13) / 4.0, (1 + (n %% 13) / 4.0) * p, 10 + n %% 50, '[]'::jsonb, t + interval '2 minutes'
FROM (
    SELECT t, n, round((40000 + 2000 * sin(n / 5000.0) + %(offset)s)::numeric, 2) AS p
    FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 minute', interval '1 minute')
         WITH ORDINALITY AS g (t, n)
) AS s
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--method", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=args.days)
    buckets = args.days * 144
    print(machine_line())
    with bench_database() as url, psycopg.connect(url) as conn:
        conn.execute("SELECT core.seed_price_source_registry()")
        markets = conn.execute(MARKETS).fetchall()
        conn.execute("UPDATE core.mq_price_source_registry SET enabled = true WHERE source_name = %s", (USDT_SOURCE,))
        (usdt_market,) = conn.execute(
            "SELECT venue, symbol FROM core.mq_price_source_registry WHERE source_name = %s", (USDT_SOURCE,)
        ).fetchall()
        t = time.perf_counter()
        for i, (venue, symbol) in enumerate(markets):
            conn.execute(GENERATE, {"venue": venue, "symbol": symbol, "offset": i * 3, "start": start, "end": end})
        conn.execute(USDT, {"start": start, "end": end, "source": USDT_SOURCE})
        conn.commit()
        conn.execute("ANALYZE raw.venue_candles")
        conn.commit()
        children_all = buckets * 10 * (len(markets) + 1)
        children = buckets * 10 * len(markets)  # BTC markets (the USDT/USD market adds one more)
        print(
            f"generated {children:,} 1m child candles ({args.days} days x {len(markets)} venues)"
            f" in {time.perf_counter() - t:.1f}s"
        )

        t = time.perf_counter()
        written = 0
        for venue, symbol in [*markets, usdt_market]:
            with conn.transaction():
                (n,) = conn.execute(
                    "SELECT core.build_venue_price_10m(%s, %s, %s, %s)",
                    (venue, symbol, start, end - timedelta(minutes=1)),
                ).fetchone()
            written += n
        build_sec = time.perf_counter() - t
        conn.execute("ANALYZE")
        conn.commit()
        print(
            f"venue 10m build: {written:,} venue rows from {children_all:,} child candles in {build_sec:.2f}s "
            f"= {written / build_sec:,.0f} rows/s, {children_all / build_sec:,.0f} candles/s"
        )

        # The reference: volume_weighted_ohlc_v1, measured in this run (first, and again if asked for).
        reference = None
        for method in ["volume_weighted_ohlc_v1", *args.method]:
            t = time.perf_counter()
            with conn.transaction():
                (first, last, composed) = conn.execute(
                    "SELECT * FROM core.compose_btc_price_10m(%s, %s, %s)", (method, start, end)
                ).fetchone()
            compose_sec = time.perf_counter() - t
            assert composed == buckets, (composed, buckets)
            (priced, converted) = conn.execute(
                "SELECT count(*) FILTER (WHERE source_count = %s),"
                ' count(*) FILTER (WHERE contributing_sources @> \'[{"quote": "USDT"}]\')'
                " FROM core.mq_btc_price_10m",
                (len(markets),),
            ).fetchone()
            conn.commit()
            if reference is None:
                reference = compose_sec
                continue
            print(
                f"canonical compose ({method}): {composed:,} buckets x {len(markets)} venues in {compose_sec:.2f}s "
                f"= {composed / compose_sec:,.0f} buckets/s, {written / compose_sec:,.0f} venue rows/s; "
                f"{compose_sec / reference:.2f}x volume_weighted_ohlc_v1 of this run ({reference:.2f}s); "
                f"{priced:,} buckets with all {len(markets)} venues, {converted:,} with USDT venues converted"
            )


if __name__ == "__main__":
    main()
