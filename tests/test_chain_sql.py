"""The chain-lane SQL builders on hand-made rows: exact expected rows on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from tests.chainrows import Block, Tx, chain_snapshot, insert_blocks, table_rows

T0 = datetime(2024, 1, 1, tzinfo=UTC)
BTC = 100_000_000


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def handmade_chain() -> list[Block]:
    return [
        # Genesis: its 50 BTC coinbase never entered the UTXO set -> issues nothing, no miner revenue.
        Block(0, at(0), at(1), 50 * BTC),
        # Same bucket 00:00; fees all known (10,000) -> issued = coinbase - fees = 50 BTC.
        Block(1, at(9), at(5), 50 * BTC + 10_000, [Tx(1 * BTC, fee_sat=10_000, vsize=200, segwit=True, inputs=2)]),
        # Bucket 00:10 stays empty. Bucket 00:20: a miner claiming 49 BTC with an unknown fee -> fallback
        # fee = max(49 - 50, 0) = 0 and issued 49 BTC (unclaimed subsidy never exists).
        Block(2, at(30), at(25), 49 * BTC, [Tx(2 * BTC, fee_sat=None, vsize=300)]),
        # Also bucket 00:20 (header 100 s after block 2): fees 100 + 200 known.
        Block(
            3,
            at(30) + timedelta(seconds=100),
            at(28),
            50 * BTC + 300,
            [Tx(3 * BTC, fee_sat=100, vsize=100), Tx(4 * BTC, fee_sat=200, vsize=400, segwit=True)],
        ),
    ]


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url)


def build(conn: psycopg.Connection, target: datetime | None = None, max_buckets: int | None = None):
    with conn.transaction():
        return conn.execute("SELECT * FROM core.build_primitive_10m(%s, %s)", (target, max_buckets)).fetchall()


def test_primitive_block_rules(db_url):
    with connect(db_url) as conn:
        insert_blocks(conn, handmade_chain())
        rows = conn.execute(
            "SELECT height, tx_count, non_coinbase_tx_count, input_count, output_count, total_out_sat,"
            " fees_known, total_fee_sat, subsidy_sat, issued_sat, miner_revenue_sat, avg_fee_sat,"
            " min_feerate_sat_vb, max_feerate_sat_vb, segwit_tx_count, cumulative_supply_sat, bucket_start_utc,"
            " block_vsize_vb FROM core.btc_primitive_block ORDER BY height"
        ).fetchall()
    assert rows == [
        (0, 1, 0, 0, 1, 50 * BTC, True, 0, 0, 0, 0, None, None, None, 0, 0, at(0), 1000),
        (
            1,
            2,
            1,
            2,
            3,
            51 * BTC + 10_000,
            True,
            10_000,
            50 * BTC,
            50 * BTC,
            50 * BTC + 10_000,
            Decimal("10000.00000000"),
            Decimal("50.00000000"),
            Decimal("50.00000000"),
            1,
            50 * BTC,
            at(0),
            1000,
        ),
        # Unknown fee: fallback fee 0, no average or feerates.
        (2, 2, 1, 1, 3, 51 * BTC, False, 0, 49 * BTC, 49 * BTC, 49 * BTC, None, None, None, 0, 99 * BTC, at(20), 1000),
        (
            3,
            3,
            2,
            2,
            5,
            57 * BTC + 300,
            True,
            300,
            50 * BTC,
            50 * BTC,
            50 * BTC + 300,
            Decimal("150.00000000"),
            Decimal("0.50000000"),
            Decimal("1.00000000"),
            1,
            149 * BTC,
            at(20),
            1000,
        ),
    ]


def test_primitive_10m_exact_rows(db_url):
    with connect(db_url) as conn:
        insert_blocks(conn, handmade_chain())
        result = build(conn, at(44))
        assert [(r[0], r[1], r[2], r[3]) for r in result] == [(at(0), at(40), 5, 3)]
        rows = conn.execute(
            "SELECT bucket_start_utc, block_count, issued_sat_10m, fees_sat_10m, miner_revenue_sat_10m,"
            " total_out_sat_10m, transferred_sat_10m, transferred_btc_10m, tx_count_10m, non_coinbase_tx_count_10m,"
            " input_count_10m, output_count_10m, utxo_increase_10m, segwit_tx_count_10m,"
            " supply_total_sat, best_block_height_last, halving_epoch, difficulty_last,"
            " block_interval_mean_sec_10m, block_interval_median_sec_10m, avg_fee_sat_10m, median_fee_sat_10m,"
            " avg_feerate_sat_vb_10m, min_feerate_sat_vb_10m, max_feerate_sat_vb_10m, segwit_share_10m,"
            " tx_size_mean_bytes_10m, block_size_mean_bytes_10m, block_reward_sat_avg, tx_rate_per_sec_10m,"
            " close_price_usd, market_cap_usd"
            " FROM core.btc_primitive_10m ORDER BY bucket_start_utc"
        ).fetchall()
    d = Decimal
    # fmt: off
    empty_after_1 = (0, 0, 0, 0, 0, 0, d("0E-8"), 0, 0, 0, 0, 0, 0, 50 * BTC, 1, 0, d(2),
                     None, None, None, None, None, None, None, None, None, None, None, d("0E-8"), None, None)
    empty_after_3 = (0, 0, 0, 0, 0, 0, d("0E-8"), 0, 0, 0, 0, 0, 0, 149 * BTC, 3, 0, d(4),
                     None, None, None, None, None, None, None, None, None, None, None, d("0E-8"), None, None)
    assert rows == [
        # 00:00: genesis (state only: no flow counts it) + block 1, so one block and no interval.
        # Transferred = outputs that are not coinbase payouts (1 BTC).
        (at(0), 1, 50 * BTC, 10_000, 50 * BTC + 10_000, 51 * BTC + 10_000, 1 * BTC, d("1.00000000"), 2, 1,
         2, 3, 1, 1, 50 * BTC, 1, 0, d(2), None, None, d("10000.00000000"), d("10000"),
         d("50.00000000"), d("50.00000000"), d("50.00000000"), d("1.00000000"), d("200.00000000"),
         d("1000.00000000"), d("5000010000.00000000"), d("0.00333333"), None, None),
        # 00:10: no block: flows 0, state carried from block 1, statistics NULL.
        (at(10), *empty_after_1),
        # 00:20: blocks 2 and 3; fee observations are block 3's two txs only (block 2's fee is unknown).
        (at(20), 2, 99 * BTC, 300, 99 * BTC + 300, 108 * BTC + 300, 9 * BTC, d("9.00000000"), 5, 3,
         3, 8, 5, 1, 149 * BTC, 3, 0, d(4), d("100.00000000"), d("100"), d("100.00000000"), d("150"),
         d("0.60000000"), d("0.50000000"), d("1.00000000"), d("0.33333333"), d("210.00000000"),
         d("1000.00000000"), d("4950000150.00000000"), d("0.00833333"), None, None),
        (at(30), *empty_after_3),
        (at(40), *empty_after_3),
    ]
    # fmt: on


def test_rebuild_and_replay_are_identical(db_url):
    with connect(db_url) as conn:
        insert_blocks(conn, handmade_chain())
        build(conn, at(44))
        first = chain_snapshot(conn)
        # Replaying the same batch and rebuilding the whole timeline from scratch changes nothing.
        insert_blocks(conn, handmade_chain())
        build(conn, at(44))
        assert chain_snapshot(conn) == first
        with conn.transaction():
            conn.execute("DELETE FROM core.btc_primitive_10m")
            conn.execute("DELETE FROM core.sync_checkpoints WHERE component = 'btc_primitive_10m_builder'")
        build(conn, at(44))
        assert chain_snapshot(conn) == first
        # Building in chunks of two buckets gives the same rows.
        with conn.transaction():
            conn.execute("DELETE FROM core.btc_primitive_10m")
            conn.execute("DELETE FROM core.sync_checkpoints WHERE component = 'btc_primitive_10m_builder'")
        while build(conn, at(44), 2):
            pass
        assert chain_snapshot(conn) == first


def test_idle_timeline_advances_and_late_block_rewrites_its_bucket(db_url):
    with connect(db_url) as conn:
        chain = handmade_chain()
        insert_blocks(conn, chain[:3])
        build(conn, at(64))  # idle advance to 01:00 with the tip at block 2 (bucket 00:20)
        (count, last) = conn.execute("SELECT count(*), max(bucket_start_utc) FROM core.btc_primitive_10m").fetchone()
        assert (count, last) == (7, at(60))
        # Block 3 arrives later but its median time puts it in bucket 00:20, behind the timeline's end.
        insert_blocks(conn, chain[3:])
        build(conn, at(64))
        incremental = table_rows(conn, "core.btc_primitive_10m", "bucket_start_utc")
        with conn.transaction():
            conn.execute("DELETE FROM core.btc_primitive_10m")
            conn.execute("DELETE FROM core.sync_checkpoints WHERE component = 'btc_primitive_10m_builder'")
        build(conn, at(64))
        assert table_rows(conn, "core.btc_primitive_10m", "bucket_start_utc") == incremental
        (supply,) = conn.execute(
            "SELECT supply_total_sat FROM core.btc_primitive_10m WHERE bucket_start_utc = %s", (at(60),)
        ).fetchone()
        assert supply == 149 * BTC


def test_reorg_function_rewinds_and_logs(db_url):
    with connect(db_url) as conn:
        chain = handmade_chain()
        insert_blocks(conn, chain)
        build(conn, at(44))
        with conn.transaction():
            (depth,) = conn.execute("SELECT core.apply_btc_reorg(1, %s, 'test')", ("f" * 64,)).fetchone()
        assert depth == 2
        event = conn.execute(
            "SELECT fork_height, old_tip_height, depth, orphaned_block_hashes, fork_bucket_utc"
            " FROM core.btc_reorg_events"
        ).fetchone()
        assert event == (1, 3, 2, [chain[2].hash(), chain[3].hash()], at(0))
        checkpoints = dict(conn.execute("SELECT component, last_height FROM core.sync_checkpoints").fetchall())
        assert checkpoints == {"btc_raw_block_ingestion": 1, "btc_primitive_10m_builder": 1}
        # The winning branch: one block in bucket 00:30 instead of two in 00:20.
        winner = [Block(2, at(33), at(31), 50 * BTC, [Tx(5 * BTC, fee_sat=0)], branch="b")]
        insert_blocks(conn, winner)
        build(conn, at(44))
        after = table_rows(conn, "core.btc_primitive_10m", "bucket_start_utc")
        conn.commit()
    with connect(db_url) as conn:
        with conn.transaction():
            for table in (
                "raw.btc_tx_raw",
                "raw.btc_blocks_raw",
                "core.btc_primitive_block",
                "core.btc_primitive_10m",
                "core.sync_checkpoints",
            ):
                conn.execute(f"DELETE FROM {table}")
        insert_blocks(conn, chain[:2] + winner)
        build(conn, at(44))
        assert table_rows(conn, "core.btc_primitive_10m", "bucket_start_utc") == after
        bucket_20 = [r for r in after if r[0] == at(20)][0]
        assert bucket_20[1] == 0  # the orphaned blocks left bucket 00:20


def test_batch_must_extend_the_stored_chain(db_url):
    with connect(db_url) as conn:
        insert_blocks(conn, handmade_chain()[:2])
        stray = Block(2, at(30), at(25), 50 * BTC, branch="x")
        with pytest.raises(psycopg.Error) as info, conn.transaction():
            conn.execute(
                "INSERT INTO raw.btc_blocks_raw (height, block_hash, previous_block_hash, block_time,"
                " median_time, tx_count, size, difficulty, chainwork, version, merkle_root, bits, nonce)"
                " VALUES (2, %s, %s, %s, %s, 1, 200, 1, %s, 1, %s, '1d00ffff', 0)",
                (stray.hash(), "e" * 64, stray.time, stray.median_time, "0" * 64, "0" * 64),
            )
            conn.execute(
                "INSERT INTO raw.btc_tx_raw (height, tx_index, txid, size, is_coinbase, is_segwit,"
                " input_count, output_count, output_value_sat) VALUES (2, 0, %s, 100, true, false, 1, 1, 1)",
                (bytes.fromhex("d" * 64),),
            )
            conn.execute("SELECT core.finish_block_batch(2, 2)")
        assert info.value.sqlstate == "MQ001"
        (count,) = conn.execute("SELECT count(*) FROM raw.btc_blocks_raw").fetchone()
        assert count == 2
