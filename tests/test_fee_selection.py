"""core.btc_fee_stats_of_blocks (order-statistic selection over the blocks' sorted arrays) gives exactly what
merging the blocks' arrays and applying core.btc_fee_stats gives, on both engines.

Fee facts rows are written directly with random sorted arrays that share many values across blocks (ties
at every rank), blocks with one observation, a block whose feerates are empty (zero vsize), fees of 400
BTC and more, and Core feerate weights spread unevenly; then random sets of 2..12 blocks (and one of 60)
are compared, every statistic, with the merge computed in SQL.
"""

from __future__ import annotations

import random

import psycopg

STATS = (
    "median_fee_sat, fee_p10_sat, fee_p25_sat, fee_p75_sat, fee_p90_sat, median_feerate_sat_vb,"
    " min_feerate_sat_vb, max_feerate_sat_vb, feerate_p10_sat_vb, feerate_p25_sat_vb, feerate_p50_sat_vb,"
    " feerate_p75_sat_vb, feerate_p90_sat_vb"
)

# The blocks' observations merged (unnest, one sort per array) and core.btc_fee_stats of the result.
MERGED = f"""
SELECT {STATS}
FROM core.btc_fee_stats(
    (SELECT array_agg(u.v ORDER BY u.v) FROM core.btc_block_fee_facts AS f, unnest(f.fees_sorted_sat) AS u (v)
     WHERE f.height = ANY(%(h)s)),
    (SELECT array_agg(u.v ORDER BY u.v) FROM core.btc_block_fee_facts AS f, unnest(f.feerates_sorted_e8) AS u (v)
     WHERE f.height = ANY(%(h)s)),
    (SELECT array_agg(u.r ORDER BY u.r, u.w) FROM core.btc_block_fee_facts AS f,
         unnest(f.core_feerates_sat_vb, f.core_feerate_weights_wu) AS u (r, w) WHERE f.height = ANY(%(h)s)),
    (SELECT array_agg(u.w ORDER BY u.r, u.w) FROM core.btc_block_fee_facts AS f,
         unnest(f.core_feerates_sat_vb, f.core_feerate_weights_wu) AS u (r, w) WHERE f.height = ANY(%(h)s))
)
"""


def block_arrays(rng: random.Random, height: int) -> tuple:
    n = rng.choice([1, 2, 3, 7, 50, 200, 613])
    fees = sorted(
        rng.choice([0, 1, 250, 1000, 1000, 4_000_000_000_000]) if rng.random() < 0.3 else rng.randrange(5000)
        for _ in range(n)
    )
    rates = (
        []
        if height % 11 == 0
        else sorted(rng.randrange(40) * 100_000_000 + rng.choice([0, 50_000_000]) for _ in range(n))
    )
    core_rates = sorted(rng.sample(range(60), min(60, rng.randrange(1, 25))))
    weights = [rng.choice([1, 4, 400, 3999, 100_000]) for _ in core_rates]
    return n, fees, rates, core_rates, weights


def test_selection_equals_merging_the_arrays(db_url):
    rng = random.Random(20261202)
    with psycopg.connect(db_url) as conn:
        for height in range(1, 121):
            n, fees, rates, core_rates, weights = block_arrays(rng, height)
            conn.execute(
                "INSERT INTO core.btc_block_fee_facts (height, fee_tx_count, fee_total_sat, fee_vsize_total_vb,"
                " fee_weight_total_wu, fees_sorted_sat, feerates_sorted_e8, core_feerates_sat_vb,"
                " core_feerate_weights_wu) VALUES (%s, %s, %s, 0, %s, %s, %s, %s, %s)",
                (height, n, sum(fees), sum(weights), fees, rates, core_rates, weights),
            )
        conn.commit()
        sets = [sorted(rng.sample(range(1, 121), rng.randrange(2, 13))) for _ in range(150)]
        sets += [list(range(1, 61)), [11, 22], [11, 22, 33], [1, 2]]
        compared = 0
        for heights in sets:
            selected = conn.execute(f"SELECT {STATS} FROM core.btc_fee_stats_of_blocks(%s)", (heights,)).fetchall()
            merged = conn.execute(MERGED, {"h": heights}).fetchall()
            assert selected == merged, heights
            compared += 1
        conn.commit()
    assert compared == len(sets)
