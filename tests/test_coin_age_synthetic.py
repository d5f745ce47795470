"""Coin-age metrics on a synthetic chain: sim-node's synthetic inputs spend real earlier outputs of their own
branch, of many ages, and getblock verbosity 3 gives each input the output it spends.

A chain from genesis of 50 blocks about a day apart (--block-spacing 86400: its coins span the < 1d, 1d-1w,
1w-1m and 1-3m age bands) is walked as sim-node serves it: every prevout equals the output it names (value,
height, script, coinbase flag), every output is spent at most once and only later in its branch, every fee is
inputs - outputs >= 0 and every coinbase the subsidy + fees. Loaded through the loader (which reads it at
verbosity 3, sim-node reporting Core 29), its UTXO facts and, with the fixed daily price series, its coin days
destroyed, realized cap, SOPR, age-band and holder supply equal the per-output reference
(tests/coin_age_reference.py, which follows outpoints and never reads prevouts). After a reorg the new
branch and the stale blocks each spend only outputs of their own ancestry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from app.btc.backfill import backfill
from app.btc.chain_sync import IngestOptions
from app.simnode.chain import SimChain
from app.simnode.server import SimNodeServer
from app.simnode.synthetic import subsidy_sat
from tests.coin_age_reference import BANDS, Ledger, band_of, utc_day
from tests.simnode_proc import RPC_PASSWORD, RPC_USER
from tests.test_coin_age import compare_with_reference, price_and_run_metrics

SAT = Decimal(100_000_000)
BLOCKS = 50


def sats(value: Decimal) -> int:
    return int(value * SAT)


def served(chain: SimChain, block_hash: str) -> dict:
    return json.loads(chain.block_json(block_hash, 3), parse_float=Decimal)


def walk(chain: SimChain, hashes: list[str]) -> dict[str, int]:
    """Checks the blocks (a branch from genesis, in height order) as served; returns counts of what was seen."""
    outputs: dict[tuple[str, int], tuple[int, int, str, bool]] = {}
    seen = {"inputs": 0, "young": 0, "old": 0}
    for block_hash in hashes:
        block = served(chain, block_hash)
        height = block["height"]
        fees = 0
        for index, tx in enumerate(block["tx"]):
            if index > 0:
                spent = 0
                for vin in tx["vin"]:
                    named = outputs.pop((vin["txid"], vin["vout"]))  # exists, unspent, on this branch
                    prevout = vin["prevout"]
                    assert (sats(prevout["value"]), prevout["height"], prevout["scriptPubKey"]["hex"]) == named[:3]
                    assert prevout["generated"] is named[3]
                    assert prevout["height"] <= height
                    spent += named[0]
                    seen["inputs"] += 1
                    seen["young" if height - prevout["height"] <= 1 else "old"] += 1
                out = sum(sats(v["value"]) for v in tx["vout"])
                assert spent - out == sats(tx["fee"]) >= 0, tx["txid"]
                fees += spent - out
            for vout in tx["vout"]:
                script = vout["scriptPubKey"]["hex"]
                if height > 0 and not script.startswith("6a"):
                    outputs[(tx["txid"], vout["n"])] = (sats(vout["value"]), height, script, index == 0)
        assert sum(sats(v["value"]) for v in block["tx"][0]["vout"]) == subsidy_sat(height) + fees, height
    seen["utxo"] = len(outputs)
    return seen


def ledger_of(chain: SimChain) -> Ledger:
    """The reference's input: the served blocks' txids, outpoints and outputs (verbosity 2: no prevouts)."""
    ledger = Ledger()
    for height in range(chain.tip_height + 1):
        block = json.loads(chain.block_json(chain.by_height[height].hash, 2), parse_float=Decimal)
        txs = [
            (
                tx["txid"],
                [(v["txid"], v["vout"]) for v in tx["vin"] if "txid" in v],
                [(sats(v["value"]), bytes.fromhex(v["scriptPubKey"]["hex"])) for v in tx["vout"]],
            )
            for tx in block["tx"]
        ]
        ledger.add_block(height, block["time"], txs)
    return ledger


@pytest.fixture(scope="module")
def daily_chain():
    chain = SimChain(seed=3, txs_per_block=80, spacing=86_400)
    chain.add_synthetic(BLOCKS, 0)
    server = SimNodeServer(chain, rpc_user=RPC_USER, rpc_password=RPC_PASSWORD).start()
    yield chain, server
    server.stop()


def test_synthetic_prevouts_are_the_outputs_they_name(daily_chain):
    chain, _ = daily_chain
    seen = walk(chain, [chain.by_height[h].hash for h in range(BLOCKS)])
    assert seen["inputs"] > 20 * BLOCKS and seen["young"] > 0 and seen["old"] > seen["inputs"] // 10
    assert seen["utxo"] > 0


def test_synthetic_chain_coin_age_metrics_equal_the_reference(db_url, daily_chain):
    chain, server = daily_chain
    from app.btc.rpc import BitcoinRpc, RpcConfig

    rpc = BitcoinRpc(RpcConfig(server.url, RPC_USER, RPC_PASSWORD, timeout_sec=60, retries=0, backoff_sec=0.05))
    until = datetime.fromtimestamp(chain.tip.time, UTC) + timedelta(days=1)
    with psycopg.connect(db_url) as conn:
        report = backfill(
            conn, rpc, "full", IngestOptions(batch_blocks=20, verbosity=3), show_progress=False, build_until=until
        )
    assert report.blocks == BLOCKS
    price_and_run_metrics(db_url)
    ledger = ledger_of(chain)
    with psycopg.connect(db_url) as conn:
        assert compare_with_reference(conn, ledger) >= 20  # days with blocks (spacing is exponential)
        (known,) = conn.execute(
            "SELECT count(*) FROM core.btc_block_utxo_facts WHERE prevouts_known AND utxo_count_total IS NOT NULL"
        ).fetchone()
        assert known == BLOCKS
    # Coins of many ages: spends and the last day's supply fall in several age bands.
    spend_bands = {band_of((utc_day(b.mtp) - utc_day(o.mtp)).days) for b in ledger.blocks.values() for o in b.spent}
    last = ledger.days()[-1]
    supply_bands = {band for band, value in ledger.age_bands(last).items() if value}
    assert len(spend_bands) >= 3 and len(supply_bands) >= 4, (spend_bands, supply_bands)
    assert supply_bands <= {b for b, _ in BANDS}


def test_reorg_branches_spend_only_their_own_ancestry():
    chain = SimChain(seed=4, txs_per_block=60, spacing=3_600)
    chain.add_synthetic(40, 0)
    old = [chain.by_height[h].hash for h in range(40)]
    chain.reorg(5, 2)
    chain.mine(2)
    walk(chain, [chain.by_height[h].hash for h in range(chain.tip_height + 1)])
    walk(chain, old)  # the stale branch as it was: its blocks still name their own ancestors' outputs
    chain.reorg(3, 1)
    walk(chain, [chain.by_height[h].hash for h in range(chain.tip_height + 1)])


def test_a_chain_from_above_genesis_spends_its_own_outputs_and_older_coins():
    """From height 840,000 with nothing below: inputs spend the chain's own outputs or coins created below
    the start (which sim-node does not serve); each of the chain's outputs is spent at most once."""
    chain = SimChain(seed=2, txs_per_block=200)
    chain.add_synthetic(12, 840_000)
    outputs: dict[tuple[str, int], tuple[int, int]] = {}
    below = own = 0
    for height in range(840_000, 840_012):
        for tx in served(chain, chain.by_height[height].hash)["tx"]:
            for vin in tx.get("vin", []):
                if "prevout" not in vin:
                    continue
                if vin["prevout"]["height"] < 840_000:
                    below += 1
                else:
                    assert outputs.pop((vin["txid"], vin["vout"])) == (
                        sats(vin["prevout"]["value"]),
                        vin["prevout"]["height"],
                    )
                    own += 1
            for vout in tx["vout"]:
                outputs[(tx["txid"], vout["n"])] = (sats(vout["value"]), height)
    assert below > 0 and own > 0
