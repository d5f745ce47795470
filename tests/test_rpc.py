"""The Bitcoin Core RPC client: against sim-node (auth, retries, batches, prefetch), against Bitcoin Core's
recorded answers (both JSON-RPC shapes), and against a real regtest bitcoind when one is found."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest
from bitcoinrpc.authproxy import JSONRPCException

from app.btc.rpc import BitcoinRpc, RpcConfig, RpcError, _reply_result
from tests.bitcoind import BitcoinNode, find_bitcoind
from tests.simnode_proc import EARLY_CHAIN, FIXTURES, RPC_PASSWORD, RPC_USER, SimNodeProcess

GENESIS = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
BLOCK_1 = "00000000839a8e6886ab5951d76f411475428afc90947ee320161bbf18eb6048"


def test_calls_and_batched_hashes(early_node):
    rpc = early_node.rpc()
    assert rpc.get_block_count() == 438
    assert rpc.get_block_hashes([0, 1]) == [GENESIS, BLOCK_1]
    assert len(rpc.get_block_hashes(list(range(439)), chunk=100)) == 439
    info = rpc.call("getblockchaininfo")
    assert (info["blocks"], info["chain"]) == (438, "main")


def test_prefetch_keeps_order_across_threads(early_node):
    rpc = early_node.rpc()
    seen_threads = set()
    original = rpc.get_block

    def recording_get_block(block_hash, verbosity=2):
        seen_threads.add(threading.current_thread().name)
        return original(block_hash, verbosity)

    rpc.get_block = recording_get_block
    blocks = list(rpc.iter_blocks(list(range(100, 200)), verbosity=2, workers=4, hash_chunk=30))
    assert [b["height"] for b in blocks] == list(range(100, 200))
    assert len(seen_threads) > 1  # several getblock in flight, one proxy per thread


def test_wrong_password_is_a_clear_error(early_node):
    rpc = BitcoinRpc(RpcConfig(early_node.url, RPC_USER, "wrong", retries=0))
    with pytest.raises(RpcError, match="401"):
        rpc.get_block_count()


def test_cookie_file_auth(tmp_path):
    cookie = tmp_path / ".cookie"
    with SimNodeProcess("--raw-blocks", str(EARLY_CHAIN), "--cookie-file", str(cookie)) as cookie_node:
        # SimNodeProcess also passes user/password; the cookie must work as an alternative.
        rpc = BitcoinRpc(RpcConfig(cookie_node.url, cookie_file=cookie))
        assert rpc.get_block_hash(0) == GENESIS
    assert cookie.read_text().startswith("__cookie__:")


def test_no_credentials_is_a_configuration_error(early_node):
    with pytest.raises(ValueError, match="no RPC credentials"):
        BitcoinRpc(RpcConfig(early_node.url)).get_block_count()


def test_retries_5xx_with_doubling_backoff(early_node):
    delays = []
    rpc = BitcoinRpc(
        RpcConfig(early_node.url, RPC_USER, RPC_PASSWORD, retries=4, backoff_sec=0.01), sleep=delays.append
    )
    rpc.call("simsetfail", 3)
    assert rpc.get_block_count() == 438
    assert delays == [0.01, 0.02, 0.04]


def test_gives_up_after_retries(early_node):
    rpc = BitcoinRpc(
        RpcConfig(early_node.url, RPC_USER, RPC_PASSWORD, retries=1, backoff_sec=0.0), sleep=lambda _: None
    )
    rpc.call("simsetfail", 5)
    with pytest.raises(RpcError):
        rpc.get_block_count()
    early_node.rpc().call("simsetfail", 0)


def test_unreachable_node():
    rpc = BitcoinRpc(
        RpcConfig("http://127.0.0.1:9", RPC_USER, RPC_PASSWORD, retries=2, backoff_sec=0.0), sleep=lambda _: None
    )
    with pytest.raises(RpcError, match="unreachable after 3 attempts"):
        rpc.get_block_count()


def test_rpc_error_is_not_retried(early_node):
    delays = []
    rpc = BitcoinRpc(RpcConfig(early_node.url, RPC_USER, RPC_PASSWORD, retries=3), sleep=delays.append)
    with pytest.raises(RpcError, match="out of range") as info:
        rpc.get_block_hash(10_000)
    assert info.value.code == -8 and delays == []


def test_batch_error_item_names_the_call_and_is_not_retried(early_node):
    delays = []
    rpc = BitcoinRpc(RpcConfig(early_node.url, RPC_USER, RPC_PASSWORD, retries=3), sleep=delays.append)
    with pytest.raises(RpcError) as info:
        rpc.get_block_hashes([0, 1, 10_000, 2])
    assert info.value.code == -8 and info.value.method == "getblockhash" and delays == []
    assert "item 3 of 4 in the batch, params [10000]: Block height out of range" in str(info.value)
    assert rpc.get_block_hashes([0, 1]) == [GENESIS, BLOCK_1]  # the client goes on after it


# ---- Bitcoin Core's own answers ---------------------------------------------------------------
CORE_ANSWERS = json.loads((FIXTURES / "bitcoin-core-rpc" / "answers.json").read_text())


def core_single_replies() -> list[dict]:
    """Recorded answers to single calls that carry one JSON reply object (both JSON-RPC shapes)."""
    return [
        c
        for c in CORE_ANSWERS["cases"]
        if c["content_type"] == "application/json" and c["body"].startswith("{") and c["compare"] == "exact"
    ]


@pytest.mark.parametrize("case", core_single_replies(), ids=lambda c: c["name"])
def test_reply_reader_takes_both_json_rpc_shapes(case):
    """The client reads each of Core's recorded replies: 1.x (result + error: null) and 2.0 (one of them)."""
    reply = json.loads(case["body"], parse_float=Decimal)
    if _is_json_rpc_2(case["request"]):  # 2.0: result OR error, never both
        assert reply["jsonrpc"] == "2.0" and ("result" in reply) != ("error" in reply)
    else:  # 1.x: both, one of them null
        assert "jsonrpc" not in reply and "result" in reply and "error" in reply
    if reply.get("error") is None:
        assert _reply_result(reply, lambda: case["name"]) == reply["result"]
    else:
        with pytest.raises(JSONRPCException) as info:
            _reply_result(reply, lambda: case["name"])
        assert (info.value.code, info.value.message) == (reply["error"]["code"], reply["error"]["message"])


def _is_json_rpc_2(request: str) -> bool:
    try:
        parsed = json.loads(request)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("jsonrpc") == "2.0"


def test_core_answers_cover_both_shapes():
    replies = [json.loads(c["body"]) for c in core_single_replies()]
    shapes = {("result" in r, "error" in r, "jsonrpc" in r, r.get("error") is None) for r in replies}
    # 1.x ok and error (both keys), 2.0 ok (result only) and error (error only)
    assert {(True, True, False, True), (True, True, False, False), (True, False, True, True)} <= shapes
    assert (False, True, True, False) in shapes


# ---- a real Bitcoin Core ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def core_node(tmp_path_factory):
    """A regtest bitcoind with 5 blocks (skipped with the reason when no bitcoind is found)."""
    bitcoind, where = find_bitcoind()
    if bitcoind is None:
        pytest.skip(where)
    node = BitcoinNode(tmp_path_factory.mktemp("core-rpc"), bitcoind).start()
    try:
        node.mine_blocks(5)
        yield node
    finally:
        node.stop()


def test_single_calls_and_batches_against_bitcoin_core(core_node):
    delays = []
    rpc = BitcoinRpc(RpcConfig(core_node.url, cookie_file=core_node.cookie_file, retries=3), sleep=delays.append)
    assert rpc.get_block_count() == 5 and rpc.chain() == "regtest"
    expected = [core_node.rpc("getblockhash", h) for h in range(6)]
    assert rpc.get_block_hash(0) == expected[0]
    assert rpc.get_block_hashes(list(range(6))) == expected  # a JSON-RPC 2.0 batch: no "error" on success
    assert rpc.get_block_hashes(list(range(6)), chunk=4) == expected
    blocks = rpc.batch("getblock", [[h, 2] for h in expected])
    assert [b["height"] for b in blocks] == list(range(6)) and blocks[5]["tx"][0]["vin"][0]["coinbase"]
    infos = rpc.batch("getblockchaininfo", [[], []])
    assert [i["chain"] for i in infos] == ["regtest", "regtest"] and infos[0]["blocks"] == 5
    assert [b["height"] for b in rpc.iter_blocks(list(range(6)), verbosity=3, workers=2)] == list(range(6))

    with pytest.raises(RpcError) as info:  # a height above the tip inside a batch: Core's -8 for that item
        rpc.get_block_hashes([0, 1, 6, 2])
    assert (info.value.code, info.value.method) == (-8, "getblockhash")
    assert "item 3 of 4 in the batch, params [6]: Block height out of range" in str(info.value)
    with pytest.raises(RpcError) as info:  # the same as a single call: a JSON-RPC 1.x error, HTTP 500
        rpc.get_block_hash(6)
    assert (info.value.code, info.value.reason) == (-8, "Block height out of range")
    with pytest.raises(RpcError) as info:
        rpc.batch("getblock", [[expected[1]], ["00" * 32]])
    assert info.value.code == -5 and "item 2 of 2" in str(info.value) and "Block not found" in str(info.value)
    with pytest.raises(RpcError) as info:  # HTTP 404 with a JSON-RPC body
        rpc.call("nosuchmethod")
    assert info.value.code == -32601
    assert delays == []  # none of Core's answers is retried
    assert rpc.get_block_hashes([5]) == [expected[5]]


@pytest.mark.parametrize("processes", [0, 2])
def test_iter_blocks_records_stage_seconds(early_node, processes):
    """The loader's stage times (mqnode btc backfill's last progress line): fetch, decode, map, in threads
    or summed back from worker processes."""
    from app.btc.mapper import map_block
    from app.progress import StageTimes

    rpc = early_node.rpc()
    rpc.stage_times = StageTimes()
    mapped = list(
        rpc.iter_blocks(list(range(100, 160)), verbosity=2, workers=2, transform=map_block, processes=processes)
    )
    assert [m.height for m in mapped] == list(range(100, 160))
    assert set(rpc.stage_times.seconds) == {"rpc_fetch", "json_decode", "map"}
    assert all(s > 0 for s in rpc.stage_times.seconds.values())
    rpc.stage_times = None
    list(rpc.iter_blocks([1, 2], verbosity=2, transform=map_block))  # untimed: nothing recorded anywhere


def test_progress_prints_stage_seconds():
    import io

    from app.progress import Progress

    stream = io.StringIO()
    progress = Progress("backfill", 10, "blocks", stream=stream)
    progress.advance(10, 5000)
    progress.stages.add("rpc_fetch", 2.0)
    progress.stages.add("rpc_fetch", 0.5)
    with progress.stages.timed("map"):
        pass
    progress.finish()
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("backfill stages (seconds summed over threads): rpc_fetch 2.50s = 2,000 tx/s | map 0.")
