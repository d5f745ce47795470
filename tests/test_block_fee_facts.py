"""Per-block fee facts (core.btc_block_fee_facts) and the fee statistics built on them, on both engines.

Every median and percentile MQNODE stores (per block, per 10m bucket, per hour and day) is compared with a
straightforward reference computed here in Python from the rows of raw.btc_tx_raw: sort the period's fee
observations and pick by rank (docs/data-contract.md "Fee statistics"; feerate percentiles weighted by
transaction weight as Bitcoin Core's getblockstats does). Synthetic chains from sim-node (several blocks
per bucket), hand-made blocks (a bucket without fee observations), recorded mainnet blocks (no per-tx
fee: NULL) and a real regtest Bitcoin Core chain (its getblockstats feerate_percentiles and medianfee).
Re-ingest and reorg leave identical facts.
"""

from __future__ import annotations

import math
import shutil
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

import psycopg
import pytest

from app.btc.backfill import backfill
from app.btc.chain_sync import IngestOptions
from app.btc.listener import ChainListener
from tests.chainrows import Block, Tx, insert_blocks, table_rows
from tests.conftest import reset_engine_tables
from tests.simnode_proc import SimNodeProcess

E8 = Decimal("0.00000001")
UNTIL = datetime(2024, 1, 2, tzinfo=UTC)
OPTIONS = IngestOptions(batch_blocks=4, fetch_workers=3)

STAT_FIELDS = (
    "median_fee_sat",
    "fee_p10_sat",
    "fee_p25_sat",
    "fee_p75_sat",
    "fee_p90_sat",
    "median_feerate_sat_vb",
    "min_feerate_sat_vb",
    "max_feerate_sat_vb",
    "feerate_p10_sat_vb",
    "feerate_p25_sat_vb",
    "feerate_p50_sat_vb",
    "feerate_p75_sat_vb",
    "feerate_p90_sat_vb",
)
PERIOD_FIELDS = tuple(f for f in STAT_FIELDS if f != "feerate_p50_sat_vb")


# --- the reference, from transactions --------------------------------------------------------------------


def middle_mean(values: list) -> Decimal:
    s = sorted(values)
    n = len(s)
    return (Decimal(s[(n - 1) // 2]) + Decimal(s[n // 2])) / 2


def by_rank(values: list[int], threshold: float) -> int:
    """The first value (ascending) whose rank reaches the threshold: Core's rule with weight 1."""
    return sorted(values)[math.ceil(threshold) - 1]


def core_weighted(pairs: list[tuple[int, int]]) -> list[int]:
    """Bitcoin Core's CalculatePercentilesByWeight (rpc/blockchain.cpp), transcribed."""
    pairs = sorted(pairs)
    total = sum(w for _, w in pairs)
    thresholds = [total / 10.0, total / 4.0, total / 2.0, (total * 3.0) / 4.0, (total * 9.0) / 10.0]
    result, nxt, cumulative = [0] * 5, 0, 0
    for rate, weight in pairs:
        cumulative += weight
        while nxt < 5 and cumulative >= thresholds[nxt]:
            result[nxt] = rate
            nxt += 1
    for i in range(nxt, 5):
        result[i] = pairs[-1][0]
    return result


def reference_stats(obs: list[tuple[int, int, int]]) -> dict:
    """Statistics of fee observations (fee, vsize, weight) computed directly."""
    if not obs:
        return dict.fromkeys(STAT_FIELDS)
    fees = [f for f, _, _ in obs]
    n = len(fees)
    rates = [(Decimal(f) / Decimal(v)).quantize(E8, ROUND_HALF_UP) for f, v, _ in obs if v > 0]
    core = core_weighted([(f * 4 // w, w) for f, _, w in obs if w > 0])
    return {
        "median_fee_sat": middle_mean(fees).quantize(E8),
        "fee_p10_sat": by_rank(fees, n / 10.0),
        "fee_p25_sat": by_rank(fees, n / 4.0),
        "fee_p75_sat": by_rank(fees, (n * 3.0) / 4.0),
        "fee_p90_sat": by_rank(fees, (n * 9.0) / 10.0),
        "median_feerate_sat_vb": middle_mean(rates).quantize(E8, ROUND_HALF_UP),
        "min_feerate_sat_vb": min(rates),
        "max_feerate_sat_vb": max(rates),
        "feerate_p10_sat_vb": core[0],
        "feerate_p25_sat_vb": core[1],
        "feerate_p50_sat_vb": core[2],
        "feerate_p75_sat_vb": core[3],
        "feerate_p90_sat_vb": core[4],
    }


def observations(conn: psycopg.Connection) -> dict[int, list[tuple[int, int, int]]]:
    """Fee observations per height, read from raw.btc_tx_raw (vsize and weight as the data contract says)."""
    rows = conn.execute(
        "SELECT height, fee_sat, coalesce(vsize, ceil(coalesce(weight, 4 * size) / 4.0))::bigint,"
        " coalesce(weight, 4 * size) FROM raw.btc_tx_raw WHERE NOT is_coinbase AND fee_sat IS NOT NULL"
    ).fetchall()
    conn.commit()
    out: dict[int, list] = defaultdict(list)
    for height, fee, vsize, weight in rows:
        out[height].append((fee, vsize, weight))
    return out


def block_buckets(conn: psycopg.Connection, width: str) -> dict[datetime, list[int]]:
    rows = conn.execute(
        "SELECT core.period_start(%s, bucket_start_utc), height FROM core.btc_primitive_block WHERE height > 0",
        (width,),
    ).fetchall()
    conn.commit()
    out: dict[datetime, list[int]] = defaultdict(list)
    for bucket, height in rows:
        out[bucket].append(height)
    return out


def stored(conn: psycopg.Connection, sql: str, fields: Iterable[str]) -> dict:
    rows = conn.execute(sql).fetchall()
    conn.commit()
    return {r[0]: dict(zip(fields, r[1:], strict=True)) for r in rows}


def check_against_reference(conn: psycopg.Connection, metrics: bool = True) -> dict[str, int]:
    """Every block, 10m bucket and (with metrics) hour/day fee statistic equals the reference; returns
    what was compared."""
    obs = observations(conn)
    blocks = stored(conn, f"SELECT height, {', '.join(STAT_FIELDS)} FROM core.btc_block_fee_facts", STAT_FIELDS)
    heights = [h for (h,) in conn.execute("SELECT height FROM raw.btc_blocks_raw").fetchall()]
    conn.commit()
    assert sorted(blocks) == sorted(heights)
    for h in heights:
        assert blocks[h] == reference_stats(obs.get(h, [])), h
    counts = {"blocks": len(heights)}

    tenm_sql = ", ".join(f"{f}_10m" for f in PERIOD_FIELDS)
    tenm = stored(conn, f"SELECT bucket_start_utc, {tenm_sql} FROM core.btc_primitive_10m", PERIOD_FIELDS)
    multi = 0
    tenm_blocks = block_buckets(conn, "10m")
    for bucket, hs in tenm_blocks.items():
        expected = reference_stats([o for h in hs for o in obs.get(h, [])])
        assert tenm[bucket] == {f: expected[f] for f in PERIOD_FIELDS}, (bucket, hs)
        multi += len([h for h in hs if obs.get(h)]) > 1
    for bucket, row in tenm.items():  # buckets without a counted block: no statistic
        if bucket not in tenm_blocks:
            assert set(row.values()) == {None}, bucket
    counts["10m"], counts["10m_multi_block"] = len(tenm), multi

    for interval in ("10m", "1h", "24h") if metrics else ():
        metric = stored(
            conn,
            f"SELECT bucket_start_utc, {', '.join(PERIOD_FIELDS)} FROM core.btc_fee_metrics_{interval}",
            PERIOD_FIELDS,
        )
        assert metric, interval
        for bucket, hs in block_buckets(conn, interval).items():
            if bucket in metric:
                expected = reference_stats([o for h in hs for o in obs.get(h, [])])
                assert metric[bucket] == {f: expected[f] for f in PERIOD_FIELDS}, (interval, bucket)
        counts[interval + "_metric"] = len(metric)
    return counts


def run_fee_metrics(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for (name,) in conn.execute("SELECT rollup_name FROM core.rollup_registry ORDER BY refresh_order").fetchall():
            conn.execute("CALL core.refresh_rollup(%s)", (name,))
    # The metric function itself over every period (no price lane here, so the runner would wait for it).
    with psycopg.connect(url) as conn:
        for interval in ("10m", "1h", "24h"):
            conn.execute(
                "SELECT core.metric_fee_metrics(%s, min(bucket_start_utc), max(bucket_start_utc), %s)"
                " FROM core.btc_primitive_10m",
                (interval, f"btc_fee_metrics_{interval}"),
            )
        conn.commit()


# --- synthetic chain with several blocks per bucket -----------------------------------------------------


@pytest.fixture
def synthetic_node():
    # Exponential block spacing (mean 600 s) bucketed by median time past: 0..4 blocks per 10m bucket,
    # 40 transactions each with sim-node's lognormal feerates.
    args = ("--synthetic", "--start-height", "0", "--count", "100", "--txs-per-block", "40")
    args += ("--start-time", "2024-01-01T00:00:00Z", "--seed", "11")
    with SimNodeProcess(*args) as node:
        yield node


def test_synthetic_chain_statistics_equal_the_reference(db_url, synthetic_node):
    with psycopg.connect(db_url) as conn:
        backfill(conn, synthetic_node.rpc(), "full", OPTIONS, show_progress=False, build_until=UNTIL)
        (fee_txs,) = conn.execute("SELECT sum(fee_tx_count) FROM core.btc_block_fee_facts").fetchone()
        conn.commit()
    assert fee_txs >= 1000
    run_fee_metrics(db_url)
    with psycopg.connect(db_url) as conn:
        counts = check_against_reference(conn)
    assert counts["blocks"] == 100 and counts["10m_multi_block"] >= 5, counts


# --- hand-made blocks: several per bucket, a bucket without fee observations ----------------------------

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def handmade_chain() -> list[Block]:
    btc = 100_000_000
    return [
        Block(0, at(0), at(0), 50 * btc),
        # Bucket 00:00, two blocks: fees 100..700 (7 observations) and 50, 5000 (2): the bucket's median and
        # percentiles come from all 9 together, not from either block.
        Block(1, at(3), at(2), 50 * btc + 2800, [Tx(btc, fee_sat=100 * k, vsize=100 + 10 * k) for k in range(1, 8)]),
        Block(2, at(8), at(6), 50 * btc + 5050, [Tx(btc, fee_sat=50, vsize=140), Tx(btc, fee_sat=5000, vsize=250)]),
        # Bucket 00:10: one block whose only transaction has no reported fee -> no observation, NULL stats.
        Block(3, at(14), at(12), 50 * btc, [Tx(btc, fee_sat=None)]),
        # Bucket 00:20 empty. Bucket 00:30: a coinbase-only block -> NULL stats.
        Block(4, at(35), at(33), 50 * btc),
        # Bucket 00:40: one block, an even count (fees 300, 301): median 300.5.
        Block(5, at(45), at(44), 50 * btc + 601, [Tx(btc, fee_sat=300, vsize=150), Tx(btc, fee_sat=301, vsize=151)]),
    ]


def test_handmade_buckets_several_blocks_and_no_observation(db_url):
    with psycopg.connect(db_url) as conn:
        insert_blocks(conn, handmade_chain())
        with conn.transaction():
            conn.execute("SELECT * FROM core.build_primitive_10m(%s)", (at(40),))
    run_fee_metrics(db_url)
    with psycopg.connect(db_url) as conn:
        counts = check_against_reference(conn)
        rows = conn.execute(
            "SELECT bucket_start_utc, block_count, fee_observed_tx_count_10m, median_fee_sat_10m, fee_p10_sat_10m,"
            " fee_p90_sat_10m FROM core.btc_primitive_10m ORDER BY 1"
        ).fetchall()
        facts = conn.execute(
            "SELECT height, fee_tx_count, fees_sorted_sat FROM core.btc_block_fee_facts ORDER BY height"
        ).fetchall()
    assert counts["10m_multi_block"] == 1
    # 9 fees 50, 100..700, 5000: median 400, p10 at rank 1 (50), p90 at rank ceil(8.1) = 9 (5000).
    assert rows == [
        (at(0), 2, 9, Decimal("400.00000000"), 50, 5000),
        (at(10), 1, 0, None, None, None),
        (at(20), 0, 0, None, None, None),
        (at(30), 1, 0, None, None, None),
        (at(40), 1, 2, Decimal("300.50000000"), 300, 301),
    ]
    assert facts == [
        (0, 0, []),
        (1, 7, [100, 200, 300, 400, 500, 600, 700]),
        (2, 2, [50, 5000]),
        (3, 0, []),
        (4, 0, []),
        (5, 2, [300, 301]),
    ]


FACT_TABLES = (
    ("core.btc_block_fee_facts", "height"),
    ("core.btc_primitive_10m", "bucket_start_utc"),
)


def fee_snapshot(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    return {table: table_rows(conn, table, order) for table, order in FACT_TABLES}


def test_reingest_and_reorg_leave_identical_fee_facts(db_url, synthetic_node):
    """Re-ingesting a range, and a reorg followed back to the same chain's facts, equal a clean ingest."""
    rpc = synthetic_node.rpc()
    with psycopg.connect(db_url) as conn:
        backfill(conn, rpc, "full", OPTIONS, show_progress=False, build_until=UNTIL)
        clean = fee_snapshot(conn)
        backfill(conn, rpc, "range", OPTIONS, 40, 70, show_progress=False, build_until=UNTIL)
        assert fee_snapshot(conn) == clean
        listener = ChainListener(conn, rpc, OPTIONS, clock=lambda: UNTIL)
        rpc.call("simreorg", 3)
        listener.sync_once()
        after_reorg = fee_snapshot(conn)
        (events,) = conn.execute("SELECT count(*) FROM core.btc_reorg_events").fetchone()
        conn.commit()
    assert events == 1
    assert after_reorg != clean  # the winning branch's last three blocks are other blocks
    reset_engine_tables(db_url)
    with psycopg.connect(db_url) as conn:
        backfill(conn, rpc, "full", OPTIONS, show_progress=False, build_until=UNTIL)
        assert fee_snapshot(conn) == after_reorg
    run_fee_metrics(db_url)
    with psycopg.connect(db_url) as conn:
        check_against_reference(conn)


# --- recorded mainnet blocks: no per-transaction fee ---------------------------------------------------


def test_recorded_blocks_without_fees_have_empty_facts(db_url, tmp_path):
    from tests.test_recorded_blocks import RANGES, recorded_files

    for path in recorded_files():
        shutil.copy(path, tmp_path / f"{path.parent.name}-{path.name}")
    with SimNodeProcess("--blocks-dir", str(tmp_path)) as node, psycopg.connect(db_url) as conn:
        for start, end in RANGES:
            backfill(conn, node.rpc(), "range", IngestOptions(), start, end, show_progress=False, build_until=UNTIL)
        rows = conn.execute(
            "SELECT count(*), sum(fee_tx_count), count(median_fee_sat), count(feerate_p50_sat_vb)"
            " FROM core.btc_block_fee_facts"
        ).fetchone()
        conn.commit()
        # The timeline spans 2009-2019 here: blocks and 10m buckets only (the metrics' rule is the same).
        check_against_reference(conn, metrics=False)
    assert rows == (9, 0, 0, 0)


# --- a real Bitcoin Core regtest chain: getblockstats ---------------------------------------------------


@pytest.fixture(scope="module")
def regtest_chain():
    from tests.regtest_chain import session_chain

    return session_chain()


def test_block_facts_equal_core_getblockstats(regtest_chain, db_url, tmp_path):
    """Every block's feerate_p10..p90 equal Core's feerate_percentiles and trunc(median_fee_sat) its
    medianfee; min/max of Core's integer feerates; and the periods equal the reference."""
    from tests.regtest_chain import run_backfill, running_node

    heights = range(1, regtest_chain.tip_height + 1)
    with running_node(regtest_chain, tmp_path) as node:
        stats = dict(zip(heights, node.batch([("getblockstats", h) for h in heights]), strict=True))
        result = run_backfill(node, db_url, 2)
    assert result.returncode == 0, result.stderr[-4000:]
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT height, fee_tx_count, median_fee_sat, feerate_p10_sat_vb, feerate_p25_sat_vb,"
            " feerate_p50_sat_vb, feerate_p75_sat_vb, feerate_p90_sat_vb, core_feerates_sat_vb"
            " FROM core.btc_block_fee_facts WHERE height >= 1 ORDER BY height"
        ).fetchall()
        conn.commit()
        run_fee_metrics(db_url)
        counts = check_against_reference(conn)
    assert len(rows) == len(stats) and counts["10m_multi_block"] >= 1
    compared = 0
    for height, n, median, *percentiles, core_rates in rows:
        core = stats[height]
        assert n == core["txs"] - 1, height
        if n == 0:  # Core reports 0 where MQNODE has no observation (NULL)
            assert core["feerate_percentiles"] == [0] * 5 and core["medianfee"] == 0 and median is None
            continue
        assert percentiles == core["feerate_percentiles"], height
        assert int(median.to_integral_value(ROUND_DOWN)) == core["medianfee"], height
        assert (core_rates[0], core_rates[-1]) == (core["minfeerate"], core["maxfeerate"]), height
        compared += 1
    assert compared >= 200
