"""UTXO set and coin-age metrics against the real Bitcoin Core, on a regtest chain with coins of many ages.

tests/coin_age_chain.py builds ~320 blocks over ~400 days whose transactions spend coins from minutes to
over a year old (OP_RETURN outputs with and without value, spends inside a block). `mqnode btc backfill`
(verbosity 3) ingests it; then:
- the UTXO set after sampled heights equals Core's `gettxoutsetinfo none <height>` (-coinstatsindex):
  txouts = utxo_count_total, bogosize = utxo_bogo_total_bytes, total_amount = utxo_value_total_sat;
- every block's facts and every day's CDD, realized cap (fixed price series), SOPR, age bands and holder
  supply equal the per-output reference (tests/coin_age_reference.py, outpoints followed from getblock 2);
- a reorg (invalidateblock, a new branch spending other old coins) leaves every coin-age table identical
  to a clean ingest of the winning chain.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

from tests.bitcoind import BitcoinNode
from tests.coin_age_chain import OldCoinChain, build_branch, session_old_coin_chain
from tests.coin_age_reference import Ledger, utc_day
from tests.conftest import wait_until
from tests.regtest_chain import run_backfill
from tests.test_coin_age import COIN_AGE_TABLES, compare_with_reference, price_and_run_metrics

pytestmark = pytest.mark.timeout(1800)
SAT = Decimal(100_000_000)


@pytest.fixture(scope="module")
def old_chain() -> OldCoinChain:
    return session_old_coin_chain()


@pytest.fixture
def node(old_chain, tmp_path) -> Iterator[BitcoinNode]:
    n = old_chain.node(tmp_path).start(["-coinstatsindex=1"])
    try:
        yield n
    finally:
        n.stop()


def ledger_of(node: BitcoinNode) -> Ledger:
    """The reference ledger of the node's best chain (getblock verbosity 2: no prevouts used)."""
    tip = node.rpc("getblockcount")
    hashes = node.batch([("getblockhash", h) for h in range(tip + 1)])
    ledger = Ledger()
    for height, block_hash in enumerate(hashes):
        block = node.rpc("getblock", block_hash, 2)
        txs = []
        for tx in block["tx"]:
            inputs = [(i["txid"], i["vout"]) for i in tx["vin"] if "txid" in i]
            outputs = [(int(Decimal(o["value"]) * SAT), bytes.fromhex(o["scriptPubKey"]["hex"])) for o in tx["vout"]]
            txs.append((tx["txid"], inputs, outputs))
        ledger.add_block(height, block["time"], txs)
    # Ingested from height 1 (the regtest genesis is from 2011; it adds nothing).
    genesis = ledger.blocks.pop(0)
    ledger.day_sets.pop(utc_day(genesis.mtp))
    return ledger


def compare_with_core(conn: psycopg.Connection, node: BitcoinNode, heights: list[int]) -> None:
    wait_until(lambda: node.rpc("getindexinfo").get("coinstatsindex", {}).get("synced"), timeout=120)
    for height in heights:
        core = node.rpc("gettxoutsetinfo", "none", height, True)
        row = conn.execute(
            "SELECT utxo_count_total, utxo_bogo_total_bytes, utxo_value_total_sat FROM core.btc_block_utxo_facts"
            " WHERE height = %s",
            (height,),
        ).fetchone()
        assert row == (core["txouts"], core["bogosize"], int(Decimal(str(core["total_amount"])) * SAT)), height


def test_utxo_set_equals_gettxoutsetinfo_and_metrics_equal_the_reference(old_chain, node, db_url):
    result = run_backfill(node, db_url, 3)
    assert result.returncode == 0, result.stderr[-4000:]
    ledger = ledger_of(node)
    spends = [(b.mtp - o.mtp) for b in ledger.blocks.values() for o in b.spent]
    # The chain is what the test needs: young spends, same-block spends, and coins over 155 days old.
    assert min(spends) == 0 and sum(1 for a in spends if a < 3600) >= 20 and max(spends) > 155 * 86400
    tip = old_chain.tip_height
    with psycopg.connect(db_url) as conn:
        compare_with_core(conn, node, sorted({*range(1, tip + 1, 23), 101, 110, tip}))
        price_and_run_metrics(db_url)
        days = compare_with_reference(conn, ledger)
        assert days >= 60
        bands = conn.execute(
            "SELECT count(*) FILTER (WHERE supply_6m_12m_sat > 0), count(*) FILTER (WHERE supply_1y_2y_sat > 0)"
            " FROM core.btc_supply_age_bands_24h"
        ).fetchone()
        assert bands[0] > 0 and bands[1] > 0, bands


def test_reorg_across_old_coin_spends_equals_a_clean_ingest(old_chain, node, new_server_db):
    db_url = new_server_db()
    assert run_backfill(node, db_url, 3).returncode == 0
    price_and_run_metrics(db_url)
    tip = old_chain.tip_height
    fork = tip - 8
    old_spends = (
        "SELECT count(*) FROM core.btc_block_spent_by_day AS s JOIN core.btc_primitive_block AS b"
        " ON s.spend_height = b.height WHERE s.spend_height > %s AND s.created_day < b.event_time::date - 30"
    )
    with psycopg.connect(db_url) as conn:
        assert conn.execute(old_spends, (fork,)).fetchone()[0] > 0  # the orphaned blocks spend old coins
    node.rpc("invalidateblock", node.rpc("getblockhash", fork + 1))
    start = old_chain.times[fork]
    end = old_chain.times[tip] + 600
    rng = random.Random(5)
    times = sorted(rng.randint(start + 60, end) for _ in range(10))
    times = [t + i for i, t in enumerate(times)]  # strictly increasing
    build_branch(node, old_chain.pools[fork], fork + 1, times, seed=99)
    assert node.rpc("getblockcount") == fork + 10
    resumed = run_backfill(node, db_url, 3, "--mode", "resume")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    price_and_run_metrics(db_url)

    clean = new_server_db()
    assert run_backfill(node, clean, 3).returncode == 0
    price_and_run_metrics(clean)
    snapshots = []
    for url in (db_url, clean):
        with psycopg.connect(url) as conn:
            (events,) = conn.execute("SELECT count(*) FROM core.btc_reorg_events").fetchone()
            snapshots.append(
                (events, {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in COIN_AGE_TABLES})
            )
    assert snapshots[0][0] == 1 and snapshots[1][0] == 0
    with psycopg.connect(clean) as conn:
        assert conn.execute(old_spends, (fork,)).fetchone()[0] > 0  # so do the winning ones
    for table in COIN_AGE_TABLES:
        assert snapshots[0][1][table] == snapshots[1][1][table], table
    with psycopg.connect(db_url) as conn:
        compare_with_reference(conn, ledger_of(node))


def test_a_chain_stored_from_above_genesis_seeds_the_utxo_set_from_the_node(old_chain, node, db_url):
    start = 200
    wait_until(lambda: node.rpc("getindexinfo").get("coinstatsindex", {}).get("synced"), timeout=120)
    result = run_backfill(node, db_url, 3, "--start-height", str(start))
    assert result.returncode == 0, result.stderr[-4000:]
    tip = old_chain.tip_height
    with psycopg.connect(db_url) as conn:
        seed = conn.execute("SELECT height, utxo_count, source FROM core.btc_utxo_seed").fetchall()
        assert seed == [(start - 1, node.rpc("gettxoutsetinfo", "none", start - 1, True)["txouts"], "gettxoutsetinfo")]
        compare_with_core(conn, node, [start, start + 37, tip])
        (complete_from,) = conn.execute("SELECT core.btc_coin_age_complete_from()").fetchone()
        assert complete_from is None  # the inherited coins have no creation time
        price_and_run_metrics(db_url)
        (caps,) = conn.execute("SELECT count(realized_cap_usd) FROM core.btc_realized_cap_24h").fetchone()
        assert caps == 0
        (bands,) = conn.execute("SELECT count(supply_lt_1d_sat) FROM core.btc_supply_age_bands_24h").fetchone()
        assert bands == 0
