"""Recorded mainnet getblock JSON (Bitcoin Core 0.16-0.21, no per-tx fee) -> exact per-block facts.

Every stored fact of btc_primitive_block is checked against a plain recomputation from the recorded
JSON: sums and counts, the fee fallback (no per-tx fee -> max(coinbase - max subsidy, 0)), issuance and
the NULLs the data contract asks for when fees are unknown. Runs on both engines.
"""

from __future__ import annotations

import json
import math
import shutil
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from app.btc.backfill import backfill
from app.btc.chain_sync import IngestOptions
from tests.chainrows import chain_snapshot
from tests.simnode_proc import EARLY_CHAIN, FIXTURES, SimNodeProcess
from tests.test_early_chain import UNTIL

SAT = Decimal(100_000_000)
RANGES = [(0, 1), (50000, 50002), (100000, 100000), (200000, 200000), (250000, 250000), (587500, 587500)]


def recorded_files() -> list[Path]:
    files = list((FIXTURES / "js-bitcoin-block").glob("*.json"))
    files += [p for p in (FIXTURES / "bitcoin-etl").glob("*/rpc_response_getblock_*_2.json") if "stream_" not in str(p)]
    return files


def sat(value) -> int:
    return int(Decimal(str(value)) * SAT)


def expected_row(block: dict) -> dict:
    """The data contract's rules recomputed directly from one recorded getblock result."""
    height = block["height"]
    txs = block["tx"]
    outs = [sum(sat(o["value"]) for o in tx["vout"]) for tx in txs]
    fees = [tx.get("fee") for tx in txs[1:]]
    known = all(f is not None for f in fees)
    max_subsidy = 5_000_000_000 >> (height // 210_000)
    total_fee = sum(sat(f) for f in fees) if known else max(outs[0] - max_subsidy, 0)
    issued = 0 if height == 0 else min(max(outs[0] - total_fee, 0), max_subsidy)
    segwit = [tx for tx in txs[1:] if any(v.get("txinwitness") for v in tx["vin"])]
    weight = block.get("weight", 4 * block["size"])
    return {
        "height": height,
        "block_hash": block["hash"],
        "tx_count": len(txs),
        "non_coinbase_tx_count": len(txs) - 1,
        "input_count": sum(len(tx["vin"]) for tx in txs[1:]),
        "output_count": sum(len(tx["vout"]) for tx in txs),
        "total_out_sat": sum(outs),
        "coinbase_out_sat": outs[0],
        "fees_known": known,
        "total_fee_sat": total_fee,
        "issued_sat": issued,
        "subsidy_sat": issued,
        "miner_revenue_sat": 0 if height == 0 else outs[0],
        "block_size_bytes": block["size"],
        "block_weight_wu": weight,
        "block_vsize_vb": math.ceil(weight / 4),
        "tx_size_total_bytes": sum(tx["size"] for tx in txs),
        "avg_fee_sat": None,
        "min_feerate_sat_vb": None,
        "segwit_tx_count": len(segwit),
        "sw_total_size_bytes": sum(tx["size"] for tx in segwit),
        "difficulty": Decimal(str(block["difficulty"])),
        "chainwork": block["chainwork"],
    }


@pytest.fixture(scope="module")
def recorded_node(tmp_path_factory):
    blocks_dir = tmp_path_factory.mktemp("recorded")
    for path in recorded_files():
        shutil.copy(path, blocks_dir / f"{path.parent.name}-{path.name}")
    with SimNodeProcess("--blocks-dir", str(blocks_dir)) as node:
        yield node


def test_recorded_blocks_give_exact_block_facts(db_url, recorded_node):
    rpc = recorded_node.rpc()
    with psycopg.connect(db_url) as conn:
        for start, end in RANGES:  # range mode: islands of heights with gaps between them
            backfill(conn, rpc, "range", IngestOptions(), start, end, show_progress=False, build_until=UNTIL)
        columns = list(expected_row(json.loads(recorded_files()[0].read_text(), parse_float=Decimal)))
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM core.btc_primitive_block ORDER BY height").fetchall()
    stored = {row[0]: dict(zip(columns, row, strict=True)) for row in rows}
    expected = {}
    for path in recorded_files():
        block = json.loads(path.read_text(), parse_float=Decimal)
        expected[block["height"]] = expected_row(block)
    assert sorted(stored) == sorted(expected) == [0, 1, 50000, 50001, 50002, 100000, 200000, 250000, 587500]
    for height, row in expected.items():
        assert stored[height] == row, height
    # Spot checks against public chain data.
    assert stored[100000]["tx_count"] == 4 and stored[587500]["tx_count"] == 777
    assert stored[587500]["segwit_tx_count"] > 0 and not stored[587500]["fees_known"]
    assert stored[250000]["total_fee_sat"] == stored[250000]["coinbase_out_sat"] - 25 * 100_000_000


UTXO_COLUMNS = ("utxo_count_total", "utxo_size_inc_bytes_10m", "utxo_set_size_total_bytes")


def test_verbosity_3_and_decode_processes_give_the_same_tables(new_server_db):
    variants = [
        IngestOptions(verbosity=2),
        IngestOptions(verbosity=3),
        # fetch + decode + map in two worker processes (normally only for ranges of >= 100 blocks)
        IngestOptions(verbosity=3, decode_processes=2, process_min_blocks=1),
    ]
    snapshots = []
    with SimNodeProcess("--raw-blocks", str(EARLY_CHAIN)) as node:
        for options in variants:
            url = new_server_db()
            with psycopg.connect(url) as conn:
                backfill(conn, node.rpc(), "full", options, show_progress=False, build_until=UNTIL)
                snapshots.append(chain_snapshot(conn))
                columns = [
                    r[0]
                    for r in conn.execute(
                        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'core'"
                        " AND table_name = 'btc_primitive_10m' ORDER BY ordinal_position"
                    ).fetchall()
                ]
    assert snapshots[1] == snapshots[2]
    # Verbosity 2 has no prevouts: the UTXO set columns are unknown (NULL), everything else is the same.
    utxo = [columns.index(c) for c in UTXO_COLUMNS]
    masked = [
        {
            t: [
                tuple(None if i in utxo and t == "core.btc_primitive_10m" else v for i, v in enumerate(r)) for r in rows
            ]
            for t, rows in snap.items()
        }
        for snap in snapshots[:2]
    ]
    assert masked[0] == masked[1]
    backbone_v2, backbone_v3 = (s["core.btc_primitive_10m"] for s in snapshots[:2])
    # Known until the first block that spends (height 170; before it every block has only a coinbase).
    assert backbone_v2[-1][utxo[0]] is None and backbone_v2[-1][utxo[2]] is None
    assert backbone_v3[-1][utxo[0]] is not None and backbone_v3[-1][utxo[2]] > 0
    non_coinbase = [r for r in snapshots[0]["raw.btc_tx_raw"] if not r[6]]
    # The early chain's 7 non-coinbase transactions, each with the fee the node reported (all 0 then).
    assert [r[11] for r in non_coinbase] == [0] * 7
