"""The raw-block path (app/btc/rawblock.py, MQNODE_BTC_BLOCK_SOURCE=rest) gives the JSON path's rows.

- Every block of the session's regtest chain (every script type) through a real bitcoind with -rest:
  getblockheader + REST raw block + REST spent outputs -> the same block row and tx rows, fee included, as
  getblock verbosity 2 through map_block; fees also equal the chain builder's own ledger.
- The real mainnet chain 0-438 (sim-node replaying bitcoinj's blk file): rows equal map_block's of its
  verbosity 3 JSON, with the spent outputs serialised from that JSON's prevouts as Core serialises them.
- Recorded mainnet blocks (js-bitcoin-block: Core's verbosity 2 JSON + the raw hex, segwit block 587,500
  included): every column equal (those fixtures carry no fees).
- What does not fit is refused with the block named; a node without -rest gets an error saying so.
"""

from __future__ import annotations

import decimal
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from app.btc.mapper import MalformedBlockError, map_block
from app.btc.rawblock import map_raw_block, map_raw_parts
from app.btc.rpc import BitcoinRpc, RpcConfig, RpcError
from tests.regtest_chain import MQNODE, ROOT, running_node, session_chain

FIXTURES = Path(__file__).parent / "fixtures"


def compact_size(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    return b"\xfd" + struct.pack("<H", n) if n <= 0xFFFF else b"\xfe" + struct.pack("<I", n)


def spent_outputs_from_v3(block: dict) -> bytes:
    """Core's /rest/spenttxouts/<hash>.bin for a block, built from getblock verbosity 3's prevouts."""
    out = [compact_size(len(block["tx"]))]
    for t, tx in enumerate(block["tx"]):
        prevouts = [] if t == 0 else [i["prevout"] for i in tx["vin"]]
        out.append(compact_size(len(prevouts)))
        for p in prevouts:
            script = bytes.fromhex(p["scriptPubKey"]["hex"])
            out.append(struct.pack("<q", int(p["value"] * 100_000_000)) + compact_size(len(script)) + script)
    return b"".join(out)


@pytest.fixture(scope="module")
def rest_node(tmp_path_factory):
    chain = session_chain()
    with running_node(chain, tmp_path_factory.mktemp("rest"), ["-rest"]) as node:
        yield chain, node


def node_rpc(node) -> BitcoinRpc:
    return BitcoinRpc(RpcConfig(url=node.url, cookie_file=node.cookie_file, retries=1, backoff_sec=0.05))


def test_every_regtest_block_maps_as_the_json_path_does(rest_node):
    chain, node = rest_node
    rpc = node_rpc(node)
    heights = list(range(0, chain.tip_height + 1))
    json_rows = {b.height: b for b in rpc.iter_blocks(heights, 2, transform=map_block)}
    checked = fees = 0
    for raw in rpc.iter_blocks(heights, 2, transform=map_raw_parts, source="rest"):
        want = json_rows[raw.height]
        assert raw.block_row == want.block_row, raw.height
        assert raw.tx_rows == want.tx_rows, raw.height
        assert raw.prevout_rows == []  # no creation heights in the spent outputs: coin age stays unknown
        assert [row[11] for row in raw.tx_rows[1:]] == chain.fees(raw.height), raw.height
        checked += len(raw.tx_rows)
        fees += sum(row[11] for row in raw.tx_rows[1:])
    assert checked >= 20_000 and fees > 0


def test_the_early_mainnet_chain_maps_as_verbosity_3_does(early_node):
    rpc = early_node.rpc()
    spent_inputs = 0
    for height in range(0, 439):
        block_hash = rpc.get_block_hash(height)
        v3 = rpc.get_block(block_hash, 3)
        header = rpc.call("getblockheader", block_hash)
        raw = bytes.fromhex(rpc.get_block(block_hash, 0))
        got, want = map_raw_block(header, raw, spent_outputs_from_v3(v3)), map_block(v3)
        assert (got.block_row, got.tx_rows) == (want.block_row, want.tx_rows), height
        spent_inputs += sum(row[8] for row in got.tx_rows[1:])
    assert spent_inputs > 0  # the chain's first spends (block 170 on) are in it


@pytest.mark.parametrize("path", sorted((FIXTURES / "js-bitcoin-block").glob("*.json")), ids=lambda p: p.stem[:12])
def test_recorded_mainnet_blocks_map_as_the_json_path_does(path):
    block = json.loads(path.read_bytes(), parse_float=decimal.Decimal)
    raw = bytes.fromhex(path.with_suffix(".hex").read_text().strip())
    got, want = map_raw_block(block, raw, None), map_block(block)
    assert got.block_row == want.block_row
    for mine, theirs, tx in zip(got.tx_rows, want.tx_rows, block["tx"], strict=True):
        if tx["vin"][0].get("coinbase") and tx["hash"] != tx["txid"] and "txinwitness" not in tx["vin"][0]:
            # Core before v22 printed no witness for the coinbase; its wtxid differing from its txid shows it has one.
            assert mine[7] is True and theirs[7] is False
            mine, theirs = mine[:7] + mine[8:], theirs[:7] + theirs[8:]
        assert mine == theirs


def test_parts_that_do_not_belong_together_are_refused():
    block = json.loads(
        (
            FIXTURES / "js-bitcoin-block" / "000000000000034a7dedef4a161fa058a2d67a173a90155f3a2fe6fc132e0ebf.json"
        ).read_bytes(),
        parse_float=decimal.Decimal,
    )
    raw = bytes.fromhex(
        (FIXTURES / "js-bitcoin-block" / "000000000000034a7dedef4a161fa058a2d67a173a90155f3a2fe6fc132e0ebf.hex")
        .read_text()
        .strip()
    )
    n = len(block["tx"])
    nothing_spent = compact_size(n) + b"\x00" * n  # the right shape for the coinbase only
    with pytest.raises(MalformedBlockError, match="block 200000 .*spent-output count differs"):
        map_raw_block(block, raw, nothing_spent)
    with pytest.raises(MalformedBlockError, match="transaction count differs"):
        map_raw_block(block, raw, compact_size(n + 1) + b"\x00" * (n + 1))
    with pytest.raises(MalformedBlockError, match="does not hash to the block's hash"):
        map_raw_block({**block, "hash": "00" * 32}, raw, None)
    with pytest.raises(MalformedBlockError, match="raw block not a block of transactions"):
        map_raw_block(block, raw[:-1], None)
    with pytest.raises(MalformedBlockError, match="transactions in the raw block, nTx"):
        map_raw_block({**block, "nTx": n + 1}, raw, None)


def test_a_node_without_rest_is_named_in_the_error(tmp_path, pg_url):
    """`mqnode btc backfill` as a user runs it, MQNODE_BTC_BLOCK_SOURCE=rest against a node without -rest."""
    chain = session_chain()
    with running_node(chain, tmp_path) as node:
        with pytest.raises(RpcError, match="REST interface is off: start bitcoind with -rest"):
            node_rpc(node).get_raw_block(node.rpc("getblockhash", 1))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MQNODE_")}
        env.update(node.mqnode_env(), MQNODE_DATABASE_URL=pg_url, MQNODE_BTC_BLOCK_SOURCE="rest")
        cmd = [MQNODE, "btc", "backfill", "--mode", "full", "--start-height", "1", "--end-height", "3", "--no-progress"]
        result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "start bitcoind with -rest" in result.stderr, result.stderr[-2000:]


def test_the_image_builds_the_decoder_with_the_command_it_documents(tmp_path):
    """The Dockerfile builds the decoder with `python -m app.btc.rawblock` in MQNODE_BUILD_DIR; run as written."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ENV MQNODE_BUILD_DIR=/srv/mqnode/.build" in dockerfile and "&& python -m app.btc.rawblock" in dockerfile
    assert dockerfile.index("python -m app.btc.rawblock") < dockerfile.index("USER nobody")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQNODE_")}
    env["MQNODE_BUILD_DIR"] = str(tmp_path / "build")
    python = str(Path(MQNODE).with_name("python"))
    result = subprocess.run([python, "-m", "app.btc.rawblock"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    built = Path(result.stdout.strip())
    assert built.parent == tmp_path / "build" and built.suffix == ".so" and built.stat().st_size > 0
