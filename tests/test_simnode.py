"""sim-node: the block decoder against Bitcoin Core's recorded JSON, the served chain, reorgs, synthetic blocks,
the network it reports, and its JSON-RPC answers against the real bitcoind's recorded ones."""

from __future__ import annotations

import base64
import http.client
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from app.simnode.chain import SimChain
from app.simnode.rawblock import parse_block
from app.simnode.server import SimNodeServer, build_chain, build_parser
from app.simnode.synthetic import subsidy_sat
from tests.simnode_proc import EARLY_CHAIN, FIXTURES, RPC_PASSWORD, RPC_USER

JS_BLOCKS = FIXTURES / "js-bitcoin-block"
SAT = Decimal(100_000_000)


def recorded_pairs() -> list[Path]:
    return sorted(JS_BLOCKS.glob("*.json"))


@pytest.mark.parametrize("json_path", recorded_pairs(), ids=lambda p: p.stem[:16])
def test_decoder_matches_core_json(json_path: Path):
    recorded = json.loads(json_path.read_text(), parse_float=Decimal)
    chain = SimChain()
    block = chain.add_raw(bytes.fromhex(json_path.with_suffix(".hex").read_text().strip()), recorded["height"])
    ours = json.loads(chain.block_json(block.hash, 2), parse_float=Decimal)
    for key in (
        "hash",
        "height",
        "version",
        "versionHex",
        "merkleroot",
        "time",
        "nonce",
        "bits",
        "strippedsize",
        "size",
        "weight",
        "previousblockhash",
    ):
        if key in recorded:
            assert ours[key] == recorded[key], key
    assert float(ours["difficulty"]) == pytest.approx(float(recorded["difficulty"]), rel=1e-12)
    assert len(ours["tx"]) == len(recorded["tx"]) == ours["nTx"]
    for mine, core in zip(ours["tx"], recorded["tx"], strict=True):
        for key in ("txid", "hash", "version", "size", "vsize", "weight", "locktime", "hex"):
            assert mine[key] == core[key], (core["txid"], key)
        for a, b in zip(mine["vin"], core["vin"], strict=True):
            # Core versions before 0.19 (these recordings) did not show the coinbase's witness; later ones do.
            keys = ("txid", "vout", "coinbase", "sequence") + (() if "coinbase" in b else ("txinwitness",))
            for key in keys:
                assert a.get(key) == b.get(key), (core["txid"], key)
            assert a.get("scriptSig", {}).get("hex") == b.get("scriptSig", {}).get("hex")
        for a, b in zip(mine["vout"], core["vout"], strict=True):
            assert (a["value"], a["n"], a["scriptPubKey"]["hex"]) == (b["value"], b["n"], b["scriptPubKey"]["hex"])
            assert a["scriptPubKey"]["type"] == b["scriptPubKey"]["type"], b["scriptPubKey"]


def test_segwit_raw_block_sizes():
    raw = (FIXTURES / "bitcoinj-raw-blocks" / "block481829.raw").read_bytes()
    block = parse_block(raw)
    assert block.bip34_height() == 481829
    assert block.size == len(raw) and block.weight == block.stripped_size * 3 + block.size
    assert block.stripped_size < block.size  # witness data present
    coinbase = block.txs[0]
    assert coinbase.is_coinbase and coinbase.inputs[0]["witness"] and coinbase.wtxid != coinbase.txid


def test_early_chain_over_rpc(early_node):
    rpc = early_node.rpc()
    assert rpc.get_block_hash(0) == "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    assert rpc.get_block_count() == 438
    hashes = rpc.get_block_hashes(list(range(439)))
    previous_median = 0
    for height in (0, 1, 100, 170, 438):
        block = rpc.get_block(hashes[height], 2)
        assert block["height"] == height and block["confirmations"] == 439 - height
        assert block.get("previousblockhash") == (hashes[height - 1] if height else None)
        assert block["mediantime"] >= previous_median
        previous_median = block["mediantime"]
    header = rpc.call("getblockheader", hashes[438])
    assert "nextblockhash" not in header and header["nTx"] == 1
    assert len(rpc.call("getblockheader", hashes[1], False)) == 160
    assert rpc.call("getblock", hashes[1], 0).startswith("01000000")


def test_block_170_fee_and_prevout(early_node):
    rpc = early_node.rpc()
    block = rpc.get_block(rpc.get_block_hash(170), 3)
    satoshi_to_hal = block["tx"][1]
    assert satoshi_to_hal["txid"] == "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16"
    assert satoshi_to_hal["fee"] == Decimal("0E-8")
    assert satoshi_to_hal["vin"][0]["prevout"]["value"] == Decimal("50.00000000")
    assert [o["value"] for o in satoshi_to_hal["vout"]] == [Decimal("10.00000000"), Decimal("40.00000000")]
    assert "prevout" not in rpc.get_block(rpc.get_block_hash(170), 2)["tx"][1]["vin"][0]


def test_amounts_are_written_with_eight_decimals():
    chain = SimChain()
    chain.add_raw_file(EARLY_CHAIN)
    text = chain.block_json(chain.by_height[1].hash, 2).decode()
    assert '"value":50.00000000' in text


def test_reorg_and_mining_keep_the_chain_linked():
    chain = SimChain(txs_per_block=5)
    chain.add_synthetic(10, 0)
    old = [chain.by_height[h].hash for h in range(10)]
    new = chain.reorg(3, 1)
    assert len(new) == 4 and chain.tip_height == 10
    assert [chain.by_height[h].hash for h in range(7)] == old[:7]
    assert all(chain.by_height[h].hash != old[h] for h in range(7, 10))
    stale = json.loads(chain.block_json(old[9], 1))
    assert stale["confirmations"] == -1
    chain.mine(2)
    for h in range(1, 13):
        assert chain.by_height[h].prev_hash == chain.by_height[h - 1].hash
        assert chain.by_height[h].mediantime >= chain.by_height[h - 1].mediantime


def test_synthetic_blocks_are_consistent_and_deterministic():
    a = SimChain(seed=5, txs_per_block=300)
    a.add_synthetic(4, 209_998)  # crosses the first halving at 210,000
    b = SimChain(seed=5, txs_per_block=300)
    b.add_synthetic(4, 209_998)
    for height in range(209_998, 210_002):
        text = a.block_json(a.by_height[height].hash, 3)
        assert text == b.block_json(b.by_height[height].hash, 3)
        block = json.loads(text, parse_float=Decimal)
        fees = Decimal(0)
        segwit = 0
        for tx in block["tx"][1:]:
            inputs = sum(v["prevout"]["value"] for v in tx["vin"])
            outputs = sum(v["value"] for v in tx["vout"])
            assert inputs - outputs == tx["fee"] > 0
            assert tx["weight"] >= 4 * tx["vsize"] - 3 and tx["size"] == len(tx["hex"]) // 2
            fees += tx["fee"]
            segwit += any("txinwitness" in v for v in tx["vin"])
        coinbase = sum(v["value"] for v in block["tx"][0]["vout"])
        assert coinbase * SAT == subsidy_sat(height) + fees * SAT
        assert 0.6 < segwit / (len(block["tx"]) - 1) < 0.9
        assert block["size"] == 80 + 3 + sum(t["size"] for t in block["tx"])
    assert subsidy_sat(209_999) == 2 * subsidy_sat(210_000)


def test_admin_failures_and_auth(early_node):
    rpc = early_node.rpc(retries=0)
    rpc.call("simsetfail", 1)
    from app.btc.rpc import RpcError

    with pytest.raises(RpcError):
        rpc.get_block_count()
    assert rpc.get_block_count() == 438


# ---- the JSON-RPC framing, against Bitcoin Core's recorded answers ----------------------------
CORE_ANSWERS = json.loads((FIXTURES / "bitcoin-core-rpc" / "answers.json").read_text())
HASH = re.compile(r'"[0-9a-f]{64}"')


@pytest.fixture(scope="module")
def core_shaped_node():
    """sim-node serving what the recording node held: regtest's genesis block (raw) and 3 blocks on it."""
    chain = SimChain(txs_per_block=3, network="regtest")
    chain.add_raw(bytes.fromhex(CORE_ANSWERS["regtest_genesis_hex"]))
    chain.add_synthetic(3)
    server = SimNodeServer(chain, rpc_user=RPC_USER, rpc_password=RPC_PASSWORD).start()
    yield server
    server.stop()


def _send(port: int, case: dict) -> tuple[int, str | None, str]:
    options = case["http"]
    credentials = "wrong:wrong" if options.get("auth") == "wrong" else f"{RPC_USER}:{RPC_PASSWORD}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            options.get("method", "POST"),
            options.get("path", "/"),
            case["request"].encode(),
            {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()},
        )
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("case", CORE_ANSWERS["cases"], ids=lambda c: c["name"])
def test_answers_exactly_as_bitcoin_core(core_shaped_node, case):
    """Status, Content-Type and body bytes as the real bitcoind answered (block hashes masked: the
    non-genesis blocks differ). JSON-RPC 1.x and 2.0 singles, notifications, batches with mixed and
    failed items, malformed requests, HTTP-level refusals."""
    status, content_type, body = _send(core_shaped_node.port, case)
    assert (status, content_type) == (case["status"], case["content_type"]), body
    if case["compare"] == "help":  # a wrong parameter count answers Core's whole help text; ours is its start
        ours, core = json.loads(body), json.loads(case["body"])
        assert core["error"]["message"].startswith(ours["error"]["message"]) and len(ours["error"]["message"]) > 20
        assert {**ours, "error": ours["error"]["code"]} == {**core, "error": core["error"]["code"]}
    else:
        assert HASH.sub('"<hash>"', body) == HASH.sub('"<hash>"', case["body"])


def test_recorded_answers_are_real_core_answers():
    assert CORE_ANSWERS["bitcoind"]["subversion"].startswith("/Satoshi:")
    by_name = {c["name"]: c for c in CORE_ANSWERS["cases"]}
    assert json.loads(by_name["v2_ok"]["body"]).keys() == {"jsonrpc", "result", "id"}  # no "error" on success
    assert (by_name["v2_error"]["status"], by_name["v1_error"]["status"]) == (200, 500)


def test_network_and_its_halving_interval():
    chain = SimChain(txs_per_block=4, network="regtest")
    chain.add_synthetic(152, 0)
    assert chain.blockchain_info()["chain"] == "regtest"
    for height, subsidy in ((149, 50 * SAT), (150, 25 * SAT), (151, 25 * SAT)):
        block = json.loads(chain.block_json(chain.by_height[height].hash, 2), parse_float=Decimal)
        fees = sum(tx["fee"] for tx in block["tx"][1:])
        assert sum(v["value"] for v in block["tx"][0]["vout"]) == subsidy / SAT + fees
    assert subsidy_sat(150, 150) == subsidy_sat(0, 150) // 2 and subsidy_sat(150) == subsidy_sat(0)
    assert SimChain().network == "main"
    with pytest.raises(ValueError, match="unknown network"):
        SimChain(network="mainnet")


def test_chain_option_names_the_network():
    args = build_parser().parse_args(["--synthetic", "--chain", "regtest", "--count", "3", "--start-height", "0"])
    assert build_chain(args).blockchain_info()["chain"] == "regtest"
    assert build_chain(build_parser().parse_args(["--synthetic", "--count", "1"])).network == "main"


def test_recorded_mainnet_chain_reports_main(early_node):
    assert early_node.rpc().call("getblockchaininfo")["chain"] == "main"


def test_synthetic_modern_blocks_are_mainnet_like():
    """What bench/scale.py relies on: full modern blocks with Poisson spacing (0, 1, 2, 3.. per 10 minutes)."""
    from app.simnode.synthetic import block_spacing

    spacings = [block_spacing(f"1:0:{h}") for h in range(840_000, 844_000)]
    assert 560 < sum(spacings) / len(spacings) < 640
    assert 0.33 < sum(s > 600 for s in spacings) / len(spacings) < 0.41  # exponential: e^-1 above the mean
    slots = [0] * (sum(spacings) // 600 + 1)
    clock = 0
    for s in spacings:
        clock += s
        slots[clock // 600] += 1
    share = {k: slots.count(k) / len(slots) for k in range(4)}
    assert 0.3 < share[0] < 0.45 and 0.3 < share[1] < 0.45 and 0.12 < share[2] < 0.25 and 0.03 < share[3] < 0.1

    chain = SimChain(seed=1, txs_per_block=3000)
    chain.add_synthetic(3, 840_000)
    for block in chain.by_height.values():
        assert 2_700 <= block.n_tx <= 3_300
        assert 2_000_000 < block.weight <= 4_000_000  # within the consensus limit, as full as mainnet's
        rendered = json.loads(chain.block_json(block.hash, 2), parse_float=Decimal)
        rates = sorted(t["fee"] * SAT / t["vsize"] for t in rendered["tx"][1:])
        assert 5 < rates[len(rates) // 2] < 20  # median feerate in sat/vB
        assert rates[0] >= 1 and rates[-1] <= 500


def test_render_cache_serves_the_same_text(tmp_path):
    first = SimChain(seed=3, txs_per_block=50, render_dir=tmp_path)
    first.add_synthetic(3, 100)
    texts = {h: first.block_json(b.hash, 2) for h, b in first.by_height.items()}
    assert len(list(tmp_path.glob("*.json"))) == 3
    second = SimChain(seed=3, txs_per_block=50, render_dir=tmp_path)
    second.add_synthetic(3, 100)
    files = sorted(tmp_path.glob("*.json"))
    for path in files:
        path.write_bytes(path.read_bytes().replace(b'"confirmations"', b'"confirmations" '))  # served from here
    for height, block in second.by_height.items():
        served = second.block_json(block.hash, 2)
        assert served != texts[height] and json.loads(served) == json.loads(texts[height])
    second.mine(1)  # a new tip changes confirmations: rendered anew, not the stale file
    block = second.by_height[100]
    assert json.loads(second.block_json(block.hash, 2))["confirmations"] == 4
