"""`mqnode run` following a real Bitcoin Core regtest node, as a user runs it.

The `mqnode` console script runs in a subprocess against a copy of the session's regtest chain
(tests/regtest_chain.py: ~300 blocks, >= 20,000 transactions of every script type) through Core's cookie
file, with ``MQNODE_BTC_POLL_INTERVAL_SEC=0.5``; on both real database servers. Shown:

- blocks mined while it runs (with the transactions of the chain's newest blocks, mined again at new
  times) are followed; reorgs made with ``invalidateblock`` at depth 1..6 (the replacement branch one
  block longer, other header times, another coinbase output, the orphaned transactions moved into
  other blocks) are each followed to the new tip, with one ``btc_reorg_events`` row per reorg. At odd
  depths the node first stays on the shorter chain until MQNODE has followed it back to the fork (the
  timeline then counts exactly the stored blocks); at even depths the new branch follows at once.
  Core's invalidateblock disconnects one block per hold of its chain lock, so a listener polling
  meanwhile sees the tips in between and records the reorg in steps; the chain lane is paused
  (SIGSTOP/SIGCONT) for that one RPC call, so that each reorg is one switch, as a reorg from peers is;
- a reorg 202 blocks deep, deeper than the listener's ancestor search window
  (app/btc/chain_sync.py ANCESTOR_WINDOW): a longer branch built on a second node and handed to the
  followed node with ``submitblock``, so the followed node switches in one step, as when a longer
  chain arrives from peers;
- Core stopped (clean shutdown: it deletes its cookie) and started again under a running
  ``mqnode run --lanes chain,api``: the raw checkpoint and the chain lane are in error saying the node
  is unreachable, and ``GET /api/v1/btc/health`` shows it; after the restart (a new cookie) the lane
  resumes, ingests what the node got meanwhile, and the error clears;
- after SIGTERM (exit code 0) every chain table equals a clean ingest of the winning chain
  (``mqnode btc backfill --mode full --until``) into a fresh database; the 10m timeline, which the
  running node builds on to the wall clock, is compared below a fixed bucket past the tip.

All block times are regtest mock times in the past, so the bucket boundaries are fixed. Every wait is
bounded and polls for a state (tests/conftest.py wait_until).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.bitcoind import BitcoinNode
from tests.chainrows import CHAIN_TABLES
from tests.conftest import free_port, wait_until
from tests.mqnode_run import MqnodeRun
from tests.regtest_chain import RegtestChain, run_backfill, running_node, session_chain

pytestmark = pytest.mark.timeout(900)

MQNODE = str(Path(sys.executable).with_name("mqnode"))
# Height 1 on, as run_backfill ingests: the regtest genesis is from 2011, and a timeline from there would be 15
# years of empty buckets.
START_HEIGHT = 1
# Anyone-can-spend coinbase outputs (OP_TRUE, OP_2, OP_3): a replacement block differs from the one it
# replaces in its coinbase as well as in its time.
COINBASE_OUTPUTS = ("raw(51)", "raw(52)", "raw(53)")
FOLLOW_TIMEOUT = 240  # seconds: the first catch-up ingests the whole chain on a busy 2-core machine


@pytest.fixture(scope="session")
def regtest_chain() -> RegtestChain:
    return session_chain()


# ----- `mqnode` as a subprocess -----------------------------------------------------------------


def mqnode_env(node: BitcoinNode, db_url: str, **extra: str) -> dict[str, str]:
    """The environment a user sets: the database, the node's URL and cookie file; nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQNODE_")}
    env.update(node.mqnode_env())
    env.update(
        MQNODE_DATABASE_URL=db_url,
        MQNODE_BTC_START_HEIGHT=str(START_HEIGHT),
        MQNODE_BTC_POLL_INTERVAL_SEC="0.5",
        MQNODE_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def clean_ingest(node: BitcoinNode, db_url: str, until: datetime) -> None:
    """`mqnode btc backfill --mode full --start-height 1 --until ISO` of the node's current chain into db_url."""
    done = run_backfill(node, db_url, 3, "--until", until.isoformat())  # as the followed run: prevouts too
    assert done.returncode == 0, f"backfill failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"


# ----- reading the database -----------------------------------------------------------------------


def checkpoint(url: str, component: str) -> dict[str, Any] | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT last_height, last_bucket_time, status, error_message FROM core.sync_checkpoints"
            " WHERE chain = 'btc' AND component = %s",
            (component,),
        ).fetchone()
    if row is None:
        return None
    return dict(zip(("last_height", "last_bucket_time", "status", "error_message"), row, strict=True))


def followed(url: str, node: BitcoinNode, built_to: datetime | None = None) -> bool:
    """The database holds the node's best chain up to its tip: raw and 10m checkpoints at the tip's height,
    the stored tip block is the node's best block, no error; and the timeline reaches built_to."""
    tip_hash = node.rpc("getbestblockhash")
    tip = node.rpc("getblockheader", tip_hash)["height"]
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT r.last_height, r.status, b.block_hash, p.last_height, p.last_bucket_time"
            " FROM core.sync_checkpoints AS r"
            " LEFT JOIN raw.btc_blocks_raw AS b ON b.height = r.last_height"
            " LEFT JOIN core.sync_checkpoints AS p ON p.chain = 'btc' AND p.component = 'btc_primitive_10m_builder'"
            " WHERE r.chain = 'btc' AND r.component = 'btc_raw_block_ingestion'"
        ).fetchone()
    if row is None:
        return False
    raw_height, status, stored_hash, built_height, built_bucket = row
    return (
        raw_height == tip
        and stored_hash == tip_hash
        and status == "ok"
        and built_height == tip
        and (built_to is None or (built_bucket is not None and built_bucket >= built_to))
    )


def wait_followed(
    url: str, node: BitcoinNode, run: MqnodeRun, timeout: float = 90, built_to: datetime | None = None
) -> None:
    def check() -> bool:
        if not run.alive():
            raise AssertionError(f"mqnode run exited with {run.proc.returncode}:\n{run.output(60)}")
        return followed(url, node, built_to)

    try:
        wait_until(check, timeout=timeout, interval=0.25)
    except AssertionError as exc:
        if not run.alive():
            raise
        state = checkpoint(url, "btc_raw_block_ingestion")
        raise AssertionError(
            f"MQNODE did not follow the node to height {node.rpc('getblockcount')} within {timeout}s;"
            f" raw checkpoint {state}; mqnode run alive: {run.alive()}\n{run.output(60)}"
        ) from exc


def snapshot(url: str, before: datetime) -> dict[str, list[tuple]]:
    """Every row of the chain tables (tests/chainrows.py CHAIN_TABLES); 10m rows only below ``before``."""
    out: dict[str, list[tuple]] = {}
    with psycopg.connect(url) as conn:
        for table, order in CHAIN_TABLES:
            where = " WHERE bucket_start_utc < %(before)s" if table == "core.btc_primitive_10m" else ""
            out[table] = conn.execute(f"SELECT * FROM {table}{where} ORDER BY {order}", {"before": before}).fetchall()
    return out


def assert_same_chain(followed_rows: dict[str, list[tuple]], clean_rows: dict[str, list[tuple]]) -> None:
    for table, _ in CHAIN_TABLES:
        got, want = followed_rows[table], clean_rows[table]
        assert want, f"{table}: the clean ingest wrote nothing"
        if got != want:
            first = next(
                (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want))
            )
            raise AssertionError(
                f"{table}: followed run differs from the clean ingest at row {first}"
                f" ({len(got)} rows vs {len(want)}):\n followed {got[first] if first < len(got) else None}"
                f"\n clean    {want[first] if first < len(want) else None}"
            )


def assert_timeline_holds_stored_blocks(url: str) -> None:
    """The 10m timeline counts exactly the stored blocks and transactions, and ends at the stored tip."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM raw.btc_blocks_raw), (SELECT sum(block_count) FROM core.btc_primitive_10m),"
            " (SELECT count(*) FROM raw.btc_tx_raw), (SELECT sum(tx_count_10m) FROM core.btc_primitive_10m),"
            " (SELECT max(height) FROM raw.btc_blocks_raw),"
            " (SELECT max(best_block_height_last) FROM core.btc_primitive_10m)"
        ).fetchone()
    blocks, blocks_10m, txs, txs_10m, tip, tip_10m = row
    assert (blocks_10m, txs_10m, tip_10m) == (blocks, txs, tip), f"timeline vs stored rows: {row}"


def reorg_events(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT fork_height, fork_block_hash, old_tip_height, old_tip_hash, depth, orphaned_block_hashes,"
            " detected_by, new_tip_hash FROM core.btc_reorg_events ORDER BY reorg_id"
        ).fetchall()


# ----- the node's chain ---------------------------------------------------------------------------


def bucket_of(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch - epoch % 600, UTC)


def block_txs(node: BitcoinNode, block_hash: str) -> list[str]:
    """The raw non-coinbase transactions of a block, in block order."""
    return [tx["hex"] for tx in node.rpc("getblock", block_hash, 2)["tx"][1:]]


def time_budget(node: BitcoinNode, from_height: int, blocks: int) -> int:
    """Seconds between blocks so that ``blocks`` more blocks above ``from_height`` stay an hour in the past
    (the wall clock's bucket must lie beyond every block), at most 10 minutes."""
    start = node.rpc("getblockheader", node.rpc("getblockhash", from_height))["time"]
    spacing = min(600, (int(time.time()) - 3600 - start) // (blocks + 1))
    assert spacing >= 30, f"the session chain's block {from_height} is too recent for {blocks} more blocks in the past"
    return spacing


def fixed_until(node: BitcoinNode) -> datetime:
    """A bucket boundary 30 minutes past the tip block's time (a block's bucket is that of its median time
    past, which is at most its own time): every block's bucket is below it, and it is in the past."""
    until = bucket_of(node.tip_time()) + timedelta(minutes=30)
    assert until < datetime.now(UTC) - timedelta(minutes=10)
    return until


# ----- the tests ------------------------------------------------------------------------------------


def test_run_follows_mined_blocks_and_reorgs_of_depth_1_to_6(regtest_chain, tmp_path, server_url, new_server_db):
    with running_node(regtest_chain, tmp_path / "core") as node:
        # The transactions of the chain's ten newest blocks are mined again while MQNODE runs: their own
        # blocks are invalidated before it starts (it never sees them), and each live block holds one
        # original block's transactions (never at a lower height, so coinbase spends stay mature).
        tip = node.rpc("getblockcount")
        first_live = tip - 9
        live = [block_txs(node, node.rpc("getblockhash", h)) for h in range(first_live, tip + 1)]
        assert sum(len(txs) for txs in live) >= 300
        node.rpc("invalidateblock", node.rpc("getblockhash", first_live))
        spacing = time_budget(node, first_live - 1, (len(live) + 6) * 5 // 4)

        def mine_live() -> str:
            return node.mine_block(live.pop(0), output=COINBASE_OUTPUTS[0], time=node.tip_time() + spacing)

        with MqnodeRun(mqnode_env(node, server_url), "--lanes", "chain") as run:
            wait_followed(server_url, node, run, timeout=FOLLOW_TIMEOUT)
            assert checkpoint(server_url, "btc_raw_block_ingestion")["last_height"] == first_live - 1
            # Blocks mined while it runs: one at a time, then two at once.
            for _ in range(2):
                mine_live()
                wait_followed(server_url, node, run)
            mine_live()
            mine_live()
            wait_followed(server_url, node, run)

            expected: list[tuple] = []
            for depth in range(1, 7):
                mine_live()
                wait_followed(server_url, node, run)
                old_tip = node.rpc("getblockcount")
                fork = old_tip - depth
                fork_hash = node.rpc("getblockhash", fork)
                orphaned = [node.rpc("getblockhash", h) for h in range(fork + 1, old_tip + 1)]
                moved = [block_txs(node, h) for h in orphaned]
                # invalidateblock disconnects one block per hold of Core's chain lock, so a listener polling
                # meanwhile sees tips between the old one and the fork and records the reorg in steps (each
                # correct). Paused for that one call, the lane sees the node go from its tip to the fork.
                with run.lane_paused("btc listen"):
                    node.rpc("invalidateblock", orphaned[0])
                if depth % 2:
                    # Odd depths: the node stays on the shorter chain until MQNODE has followed it back to the
                    # fork (the orphaned blocks leave the timeline with nothing to replace them); even depths:
                    # the longer branch follows at once, as a reorg usually comes.
                    wait_followed(server_url, node, run)
                    assert_timeline_holds_stored_blocks(server_url)
                # The replacement branch: one block longer; each orphaned block's transactions one height
                # higher (the first replacement block is empty), 3/4 or 5/4 of the spacing, another coinbase.
                block_time = node.rpc("getblockheader", fork_hash)["time"]
                branch = []
                for txs in [[], *moved]:
                    block_time += spacing * (3 if depth % 2 else 5) // 4
                    branch.append(node.mine_block(txs, output=COINBASE_OUTPUTS[1 + depth % 2], time=block_time))
                assert node.rpc("getbestblockhash") == branch[-1]
                assert not set(branch) & set(orphaned)
                wait_followed(server_url, node, run)
                assert_timeline_holds_stored_blocks(server_url)
                new_tips = [fork_hash] if depth % 2 else [fork_hash, *branch]
                expected.append((fork, fork_hash, old_tip, orphaned[-1], depth, orphaned, "listener", new_tips))
            assert not live

            until = fixed_until(node)
            wait_followed(server_url, node, run, built_to=until)
            assert run.terminate() == 0, run.output(60)
        assert "did not stop" not in run.output(60)
        followed_rows = snapshot(server_url, until)

        events = reorg_events(server_url)
        assert len(events) == 6, (
            "reorg events (fork, old tip, depth, detected by, new tip):\n"
            + "\n".join(str((e[0], e[2], e[4], e[6], e[7])) for e in events)
            + f"\nexpected forks/depths {[(w[0], w[4]) for w in expected]}\n{run.output(400)}"
        )
        for event, want in zip(events, expected, strict=True):
            # new_tip_hash is the node's tip when the listener resolved the reorg: on the new branch,
            # wherever the mining was at that moment.
            assert event[:7] == want[:7]
            assert event[7] in want[7]

        clean_url = new_server_db()
        clean_ingest(node, clean_url, until)
        clean_rows = snapshot(clean_url, until)
    assert reorg_events(clean_url) == []
    assert_same_chain(followed_rows, clean_rows)
    buckets = [row[0] for row in clean_rows["core.btc_primitive_10m"]]
    assert buckets[-1] == until - timedelta(minutes=10)  # compared through the fixed bucket


def test_run_follows_a_reorg_deeper_than_the_ancestor_window(regtest_chain, tmp_path, server_url, new_server_db):
    """202 blocks orphaned (from height 100: every block with transactions) for a 203-block branch: the
    listener searches for the common ancestor in windows of ANCESTOR_WINDOW (200) heights, here two."""
    from app.btc.chain_sync import ANCESTOR_WINDOW

    with running_node(regtest_chain, tmp_path / "core") as node:
        tip = node.rpc("getblockcount")
        fork = tip - ANCESTOR_WINDOW - 2
        assert fork >= START_HEIGHT
        depth = tip - fork
        old_hashes = [node.rpc("getblockhash", h) for h in range(fork, tip + 1)]
        # The longer branch, built on a second node from the same chain.
        with running_node(regtest_chain, tmp_path / "other") as other:
            other.rpc("invalidateblock", old_hashes[1])
            spacing = time_budget(other, fork, depth + 1)
            branch = other.mine_blocks(depth + 1, spacing=spacing, output=COINBASE_OUTPUTS[1])
            raw_branch = other.batch([("getblock", h, 0) for h in branch])

        with MqnodeRun(mqnode_env(node, server_url), "--lanes", "chain") as run:
            wait_followed(server_url, node, run, timeout=FOLLOW_TIMEOUT)
            # Handed over block by block, as from peers; the node switches when the branch has more work.
            for raw in raw_branch:
                assert node.rpc("submitblock", raw) in (None, "inconclusive")
            assert node.rpc("getbestblockhash") == branch[-1]
            wait_followed(server_url, node, run, timeout=120)
            until = fixed_until(node)
            wait_followed(server_url, node, run, built_to=until)
            assert run.terminate() == 0, run.output(60)
        followed_rows = snapshot(server_url, until)
        events = reorg_events(server_url)
        assert [e[:7] for e in events] == [
            (fork, old_hashes[0], tip, old_hashes[-1], depth, old_hashes[1:], "listener")
        ], events
        assert events[0][7] in branch  # the tip when resolved: the last block, unless seen mid-switch

        clean_url = new_server_db()
        clean_ingest(node, clean_url, until)
        clean_rows = snapshot(clean_url, until)
    assert_same_chain(followed_rows, clean_rows)
    assert followed_rows["raw.btc_blocks_raw"][-1][1] == branch[-1]


def api_health(api: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{api}/api/v1/btc/health", timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def chain_lane(health: dict[str, Any]) -> dict[str, Any] | None:
    return next((lane for lane in health["lanes"] if lane["lane"] == "chain"), None)


def healthy(health: dict[str, Any] | None) -> dict[str, Any] | None:
    """The health row when it reports no checkpoint in error and the chain lane ok (status ok), else None."""
    if health is None or health["checkpoints_in_error"] or health["status"] != "ok":
        return None
    lane = chain_lane(health)
    return health if lane is not None and lane["status"] == "ok" else None


def test_core_stopped_and_restarted_under_run(regtest_chain, tmp_path, server_url, new_server_db):
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    env_extra = {"MQNODE_API_HOST": "127.0.0.1", "MQNODE_API_PORT": str(api_port)}
    with running_node(regtest_chain, tmp_path / "core") as node:
        spacing = time_budget(node, node.rpc("getblockcount"), 8)
        env = mqnode_env(node, server_url, **env_extra)
        with MqnodeRun(env, "--lanes", "chain,api") as run:
            wait_followed(server_url, node, run, timeout=FOLLOW_TIMEOUT)
            node.mine_blocks(2, spacing=spacing)
            wait_followed(server_url, node, run)
            wait_until(lambda: healthy(api_health(api)), timeout=60, interval=0.5)

            # Core stopped cleanly (it deletes its cookie file).
            old_cookie = node.cookie_file.read_text()
            stopped_height = node.rpc("getblockcount")
            node.stop()
            assert not node.cookie_file.exists()

            def outage_in_health() -> dict[str, Any] | None:
                health = api_health(api)
                if health is None:
                    return None
                errors = {e["component"]: e for e in health["checkpoints_in_error"]}
                lane = chain_lane(health)
                if "btc_raw_block_ingestion" in errors and lane and lane["status"] == "error":
                    return health
                return None

            try:
                down = wait_until(outage_in_health, timeout=90, interval=0.5)
            except AssertionError as exc:
                raise AssertionError(f"health never showed the outage: {api_health(api)}\n{run.output(60)}") from exc
            assert down["status"] == "degraded"
            raw_error = next(e for e in down["checkpoints_in_error"] if e["component"] == "btc_raw_block_ingestion")
            lane_error = chain_lane(down)["error"]
            messages = {"raw checkpoint, no cookie": raw_error["error"], "chain lane, no cookie": lane_error}
            assert checkpoint(server_url, "btc_raw_block_ingestion")["last_height"] == stopped_height

            # Meanwhile the node gets blocks MQNODE cannot see: the same datadir on another RPC port mines
            # three (as a node catching up from peers at start-up would), then stops.
            elsewhere = BitcoinNode(node.datadir, rpc_port=free_port()).start()
            try:
                elsewhere.mine_blocks(3, spacing=spacing)
                assert elsewhere.rpc("getblockcount") == stopped_height + 3
            finally:
                elsewhere.stop()
            still_down = wait_until(outage_in_health, timeout=60, interval=0.5)
            assert still_down["last_raw_height"] == stopped_height
            messages["raw checkpoint, port closed"] = next(
                e["error"] for e in still_down["checkpoints_in_error"] if e["component"] == "btc_raw_block_ingestion"
            )

            # Core started again on its port, with a new cookie; two more blocks mined at once.
            node.start()
            assert node.cookie_file.read_text() != old_cookie
            node.mine_blocks(2, spacing=spacing)
            wait_followed(server_url, node, run, timeout=120)
            try:
                recovered = wait_until(lambda: healthy(api_health(api)), timeout=60, interval=0.5)
            except AssertionError as exc:
                raise AssertionError(f"the error never cleared: {api_health(api)}") from exc
            assert chain_lane(recovered)["error"] is None
            assert recovered["last_raw_height"] == stopped_height + 5
            until = fixed_until(node)
            wait_followed(server_url, node, run, built_to=until)
            assert run.terminate() == 0, run.output(60)
        assert "did not stop" not in run.output(60)
        assert reorg_events(server_url) == []
        followed_rows = snapshot(server_url, until)
        clean_url = new_server_db()
        clean_ingest(node, clean_url, until)
        clean_rows = snapshot(clean_url, until)
    assert_same_chain(followed_rows, clean_rows)
    # What an operator reads while the node is down says so (a clean shutdown deletes the cookie file, and
    # a missing cookie file is the node being down, not an authentication problem).
    for where, message in messages.items():
        assert "unreachable" in (message or ""), f"{where}: {message!r}"
