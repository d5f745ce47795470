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


def burnt_and_undated(node: BitcoinNode, start: int) -> tuple[int, dict[int, int]]:
    """From Core's blocks (getblock 3), independently of MQNODE: the value paid to unspendable outputs at heights
    1..start-1 (OP_RETURN or scripts over 10,000 bytes: issued, never in the UTXO set) and, per block from
    start on, how many of its inputs spend an output created below start (no creation time on a chain stored
    from start). Every coinbase of this chain claims its subsidy and fees, so nothing else is burnt."""
    burnt, undated = 0, {}
    for height in range(1, node.rpc("getblockcount") + 1):
        block = node.rpc("getblock", node.rpc("getblockhash", height), 3)
        if height < start:
            for tx in block["tx"]:
                for out in tx["vout"]:
                    script = out["scriptPubKey"]["hex"]
                    if script.startswith("6a") or len(script) > 20_000:
                        burnt += int(Decimal(str(out["value"])) * SAT)
        else:
            n = sum(1 for tx in block["tx"] for i in tx["vin"] if "prevout" in i and i["prevout"]["height"] < start)
            if n:
                undated[height] = n
    return burnt, undated


def q8(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.00000001"), rounding="ROUND_HALF_UP")


def test_a_chain_stored_from_above_genesis_seeds_the_utxo_set_and_the_supply_from_the_node(
    old_chain, node, server_url, new_server_db
):
    """A chain stored from height 200 (the node's gettxoutsetinfo at 199 as its base) against the same chain
    stored from height 1: UTXO set equal at every height; supply lower by exactly the value burnt below 200, so
    market cap and NVT are known (not NULL) and follow from it; realized cap and MVRV NULL (incomplete), SOPR
    and CDD equal wherever no block of the period spends a coin created below 200 and NULL where one does;
    core.btc_coin_age_coverage says so."""
    start = 200
    wait_until(lambda: node.rpc("getindexinfo").get("coinstatsindex", {}).get("synced"), timeout=120)
    seeded, full = server_url, new_server_db()
    result = run_backfill(node, seeded, 3, "--start-height", str(start))
    assert result.returncode == 0, result.stderr[-4000:]
    assert run_backfill(node, full, 3).returncode == 0
    price_and_run_metrics(seeded)
    price_and_run_metrics(full)
    tip = old_chain.tip_height
    below = node.rpc("gettxoutsetinfo", "none", start - 1, True)
    below_amount = int(Decimal(str(below["total_amount"])) * SAT)
    burnt, undated = burnt_and_undated(node, start)
    assert burnt > 0 and len(undated) > 3  # the chain burns value below 200 and spends old coins above it

    def per_height(url: str, query: str) -> dict[int, tuple]:
        with psycopg.connect(url) as conn:
            return {r[0]: r[1:] for r in conn.execute(query)}

    facts = (
        "SELECT f.height, f.utxo_count_total, f.utxo_value_total_sat, f.utxo_bogo_total_bytes, f.spent_undated_count,"
        " p.cumulative_supply_sat FROM core.btc_block_utxo_facts AS f JOIN core.btc_primitive_block AS p USING (height)"
    )
    got, ref = per_height(seeded, facts), per_height(full, facts)
    assert sorted(got) == list(range(start, tip + 1)) and sorted(ref) == list(range(1, tip + 1))
    # The genesis-synced node's supply is what was issued; its UTXO value (Core's total_amount) is lower by the
    # value burnt so far.
    assert ref[start - 1][1] == below_amount and ref[start - 1][4] - below_amount == burnt
    for height in range(start, tip + 1):
        assert got[height][:3] == ref[height][:3], height  # UTXO count, value, bogosize: equal
        assert got[height][4] == ref[height][4] - burnt, height  # supply: seeded from total_amount at 199
        assert got[height][3] == undated.get(height, 0), height

    with psycopg.connect(seeded) as conn:
        seed = conn.execute("SELECT height, utxo_count, utxo_value_sat, source FROM core.btc_utxo_seed").fetchall()
        assert seed == [(start - 1, below["txouts"], below_amount, "gettxoutsetinfo")]
        compare_with_core(conn, node, [start, start + 37, tip])
        (complete_from,) = conn.execute("SELECT core.btc_coin_age_complete_from()").fetchone()
        assert complete_from is None  # the inherited coins have no creation time
        (coverage,) = conn.execute("SELECT to_jsonb(c) FROM api.btc_coin_age_coverage AS c").fetchone()
        assert coverage == {
            "first_stored_height": start,
            "tip_height": tip,
            "utxo_seed_height": start - 1,
            "supply_seed_sat": below_amount,
            "supply_from_height": start,
            "utxo_set_from_height": start,
            "state_complete_from_height": None,
            "state_complete_through_height": None,
            "flows_complete_from_height": max(undated) + 1,
            "undated_flow_block_count": len(undated),
        }
        caps = conn.execute(
            "SELECT count(*), count(market_cap_usd), count(realized_cap_usd), count(mvrv), count(nupl)"
            " FROM core.btc_realized_cap_24h"
        ).fetchone()
        assert caps[0] > 30 and caps[1:] == (caps[0], 0, 0, 0)  # market cap known; realized cap and MVRV not
        (bands,) = conn.execute("SELECT count(supply_lt_1d_sat) FROM core.btc_supply_age_bands_24h").fetchone()
        assert bands == 0
    with psycopg.connect(full) as conn:
        (coverage,) = conn.execute("SELECT to_jsonb(c) FROM api.btc_coin_age_coverage AS c").fetchone()
        assert coverage == {
            "first_stored_height": 1,
            "tip_height": tip,
            "utxo_seed_height": None,
            "supply_seed_sat": None,
            "supply_from_height": 1,
            "utxo_set_from_height": 1,
            "state_complete_from_height": 1,
            "state_complete_through_height": tip,
            "flows_complete_from_height": 1,
            "undated_flow_block_count": 0,
        }
        (mvrv,) = conn.execute("SELECT count(*) FILTER (WHERE mvrv IS NULL) FROM core.btc_realized_cap_24h").fetchone()
        assert mvrv == 0  # stored from height 1, its supply and realized cap are known everywhere

    # Market cap and NVT at 10m, 1h and 24h: known on every period, from the seeded supply.
    for interval in ("10m", "1h", "24h"):
        query = (
            "SELECT c.bucket_start_utc, p.best_block_height_last,"
            " (SELECT coalesce(min(b.height), -1) FROM core.btc_primitive_block AS b"
            f"  WHERE core.period_start('{interval}', b.bucket_start_utc) = c.bucket_start_utc),"
            " c.supply_total_sat, c.close_price_usd, c.market_cap_usd, n.transferred_value_usd, n.nvt_raw"
            f" FROM core.btc_market_cap_{interval} AS c JOIN api.btc_primitive_{interval} AS p USING (bucket_start_utc)"
            f" JOIN core.btc_nvt_{interval} AS n USING (bucket_start_utc) ORDER BY 1"
        )
        mine, theirs = per_height(seeded, query), per_height(full, query)
        assert len(mine) > 3, interval
        moved = 0
        for bucket, (top, _first, supply, close, cap, moved_usd, nvt) in mine.items():
            assert supply is not None and cap is not None, (interval, bucket)
            assert (top, close) == theirs[bucket][:1] + theirs[bucket][3:4], (interval, bucket)
            assert supply == theirs[bucket][2] - burnt, (interval, bucket)
            assert cap == q8(Decimal(supply) / SAT * close), (interval, bucket)
            if theirs[bucket][1] >= start and moved_usd:  # no block of the period below 200 on either node
                assert moved_usd == theirs[bucket][5] and nvt is not None, (interval, bucket)
                assert nvt == q8(cap / moved_usd), (interval, bucket)
                moved += 1
        assert moved > 3, interval

    # SOPR and CDD per day and per 10m: equal to the genesis-synced node's where the period spends no coin
    # created below 200, NULL where it does (never a wrong value).
    for interval in ("10m", "24h"):
        query = (
            "SELECT s.bucket_start_utc, s.sopr, s.asopr, s.realized_profit_usd, d.cdd, d.dormancy,"
            " (SELECT coalesce(sum(f.spent_undated_count), 0) FROM core.btc_block_utxo_facts AS f"
            "  JOIN core.btc_primitive_block AS b USING (height)"
            f"  WHERE core.period_start('{interval}', b.bucket_start_utc) = s.bucket_start_utc),"
            " (SELECT min(b.height) FROM core.btc_primitive_block AS b"
            f"  WHERE core.period_start('{interval}', b.bucket_start_utc) = s.bucket_start_utc)"
            f" FROM core.btc_sopr_{interval} AS s JOIN core.btc_coin_days_{interval} AS d USING (bucket_start_utc)"
            " ORDER BY 1"
        )
        mine, theirs = per_height(seeded, query), per_height(full, query)
        known = unknown = 0
        for bucket, row in mine.items():
            if row[-2] > 0:
                assert row[:5] == (None,) * 5, (interval, bucket)
                assert theirs[bucket][3] is not None, (interval, bucket)
                unknown += 1
            elif row[-1] is not None and theirs[bucket][-1] >= start:  # no block below 200 on either node
                assert row[:5] == theirs[bucket][:5], (interval, bucket)
                known += row[3] is not None and row[3] > 0
        assert known > 3 and unknown > 3, (interval, known, unknown)
