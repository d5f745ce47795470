"""The Bitcoin Core RPC client against sim-node: auth (user/password, cookie), retries, batches, prefetch."""

from __future__ import annotations

import threading

import pytest

from app.btc.rpc import BitcoinRpc, RpcConfig, RpcError
from tests.simnode_proc import EARLY_CHAIN, RPC_PASSWORD, RPC_USER, SimNodeProcess

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
