"""The regtest harness itself (tests/bitcoind.py): what later tests rely on when they stop, kill,
restart and reorg a real node under MQNODE."""

from __future__ import annotations

import time

import pytest

from tests.bitcoind import ENV_BITCOIND, BitcoinNode, NodeRpcError, find_bitcoind
from tests.regtest_chain import require_bitcoind


def test_find_bitcoind_honours_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_BITCOIND, str(tmp_path / "nowhere"))
    path, reason = find_bitcoind()
    assert path is None and ENV_BITCOIND in reason


def test_node_start_mine_restart_kill_reorg(tmp_path):
    require_bitcoind()
    node = BitcoinNode(tmp_path / "node").start()
    try:
        base = (int(time.time()) // 600) * 600 - 86_400
        hashes = [node.mine_block(time=base + 600 * i) for i in range(1, 4)]
        assert [node.rpc("getblockheader", h)["time"] for h in hashes] == [base + 600, base + 1200, base + 1800]
        assert node.mine_block() and node.tip_time() == base + 2400  # default: 10 minutes after the tip
        with pytest.raises(NodeRpcError) as failure:
            node.rpc("getblockhash", 99)
        assert failure.value.code == -8 and "out of range" in failure.value.message
        assert node.batch([("getblockhash", 1), ("getblockcount",)]) == [hashes[0], 4]
        with pytest.raises(ValueError, match="ahead of the clock"):
            node.mine_block(time=int(time.time()) + 3 * 3600)

        cookie = node.cookie_file.read_text()
        node.restart()  # same datadir and port, a new cookie
        assert node.cookie_file.read_text() != cookie and node.rpc("getblockcount") == 4
        node.kill()
        assert not node.running
        node.start()  # after SIGKILL: the stale cookie is replaced, the chain is still there
        assert node.rpc("getblockcount") == 4

        node.rpc("invalidateblock", hashes[1])  # a reorg: heights 2.. replaced by a new branch
        assert node.rpc("getblockcount") == 1
        branch = [node.mine_block(time=base + 600 * i + 1) for i in range(2, 6)]
        assert node.rpc("getblockhash", 2) == branch[0] != hashes[1]
        tips = {t["status"] for t in node.rpc("getchaintips")}
        assert tips == {"active", "invalid"}
    finally:
        node.stop()
    assert not node.running and not node.cookie_file.exists()
