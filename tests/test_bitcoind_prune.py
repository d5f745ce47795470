"""A pruned Bitcoin Core node asked for a block it no longer has: the error names the height.

Core answers getblock of a pruned block with code -1 "Block not available (pruned data)", which names
neither the block nor what to do. The node here: regtest with ``-prune=1`` (manual pruning) and
``-fastprune`` (64 KiB block files, so a few hundred small blocks fill whole files), 700 blocks,
``pruneblockchain`` up to tip - 288 (Core always keeps the last 288).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.bitcoind import BitcoinNode, NodeRpcError
from tests.regtest_chain import require_bitcoind, run_backfill

START = 100  # a pruned height that is not the first one, so the message must name the one asked for


@pytest.fixture
def pruned_node(tmp_path) -> Iterator[BitcoinNode]:
    require_bitcoind()
    node = BitcoinNode(tmp_path / "pruned").start(["-prune=1", "-fastprune"])
    try:
        for _ in range(7):
            node.rpc("generatetodescriptor", 100, "raw(51)")
        node.rpc("pruneblockchain", node.rpc("getblockcount") - 288)
        yield node
    finally:
        node.stop()


def raw_checkpoint(db_url: str) -> tuple:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT status, error_message, last_height FROM core.sync_checkpoints"
            " WHERE chain = 'btc' AND component = 'btc_raw_block_ingestion' AND \"interval\" = 'block'"
        ).fetchone()


def test_backfill_of_a_pruned_block_names_the_height(pruned_node, db_url):
    info = pruned_node.rpc("getblockchaininfo")
    prune_height = info["pruneheight"]
    assert info["pruned"] and prune_height > START + 50, info
    with pytest.raises(NodeRpcError, match=r"pruned data"):  # what Core itself says
        pruned_node.rpc("getblock", pruned_node.rpc("getblockhash", START), 2)

    failed = run_backfill(pruned_node, db_url, 2, "--start-height", str(START))
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr, failed.stderr[-3000:]  # one clear line, not a stack
    last_line = failed.stderr.strip().splitlines()[-1]
    for needed in (f"block {START} was pruned", f"keeps blocks from height {prune_height} on", "--start-height"):
        assert needed in last_line, failed.stderr[-3000:]
    status, message, last_height = raw_checkpoint(db_url)
    assert status == "error" and last_height is None
    assert message.startswith(f"BlockPrunedError: getblock: block {START} was pruned"), message
    assert f"keeps blocks from height {prune_height} on" in message

    # As the message says: from the prune height on, the same node serves every block, and the error clears.
    tip = pruned_node.rpc("getblockcount")
    done = run_backfill(pruned_node, db_url, 2, "--start-height", str(prune_height))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"heights {prune_height}..{tip}, {tip - prune_height + 1} blocks" in done.stdout
    status, message, last_height = raw_checkpoint(db_url)
    assert (status, message, last_height) == ("ok", None, tip)
