"""Failure behaviour of the chain lane on PostgreSQL: SIGKILL mid-ingest, node outage, malformed blocks."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from app.btc.backfill import backfill
from app.btc.chain_sync import IngestOptions
from app.btc.listener import ChainListener
from app.btc.mapper import MalformedBlockError
from tests.chainrows import chain_snapshot
from tests.conftest import ROOT, wait_until
from tests.simnode_proc import FIXTURES, SimNodeProcess

UNTIL = "2024-01-04T00:00:00Z"
UNTIL_DT = datetime(2024, 1, 4, tzinfo=UTC)
# fmt: off
SYNTHETIC = ("--synthetic", "--start-height", "0", "--count", "300", "--txs-per-block", "300",
             "--start-time", "2024-01-01T00:00:00Z", "--seed", "11")
# fmt: on


def run_backfill(url: str, node: SimNodeProcess, mode: str = "resume", **popen) -> subprocess.Popen:
    env = {
        **os.environ,
        **node.env(),
        "MQNODE_DATABASE_URL": url,
        "MQNODE_BTC_BATCH_BLOCKS": "5",
        "MQNODE_BTC_FETCH_WORKERS": "2",
        "MQNODE_LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "app.cli", "btc", "backfill", "--mode", mode, "--until", UNTIL, "--no-progress"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.fixture(scope="module")
def synthetic_node():
    with SimNodeProcess(*SYNTHETIC) as node:
        yield node


def raw_checkpoint(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT last_height FROM core.sync_checkpoints WHERE component = 'btc_raw_block_ingestion'"
        ).fetchone()
    return -1 if row is None else row[0]


@pytest.mark.timeout(1200)  # 13 backfills of 300 blocks through the console script: slow on a loaded machine
def test_sigkill_at_random_points_then_resume_equals_clean_run(new_server_db, synthetic_node):
    clean_url = new_server_db()
    proc = run_backfill(clean_url, synthetic_node, "full")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    with psycopg.connect(clean_url) as conn:
        clean = chain_snapshot(conn)
    assert len(clean["raw.btc_blocks_raw"]) == 300

    rng = random.Random(20261124)
    for run in range(6):
        url = new_server_db()
        proc = run_backfill(url, synthetic_node, "full")
        # Kill at a random point: once a random number of blocks is committed, after a random delay
        # (inside a later batch's fetch, COPY or SQL build, or in the final timeline build).
        target = rng.randrange(-1, 150)
        wait_until(
            lambda target=target, url=url, proc=proc: raw_checkpoint(url) >= target or proc.poll() is not None,
            timeout=120,
            interval=0.01,
        )
        time.sleep(rng.uniform(0.0, 0.05))
        assert proc.poll() is None, f"run {run}: the loader finished before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Restart (resume from the checkpoint) until done.
        restart = run_backfill(url, synthetic_node, "resume")
        _, err = restart.communicate(timeout=300)
        assert restart.returncode == 0, err
        with psycopg.connect(url) as conn:
            assert chain_snapshot(conn) == clean, f"run {run} (killed after height {target})"


def test_node_down_marks_error_then_resumes(server_url):
    node = SimNodeProcess(*SYNTHETIC).start()
    port = node.port
    rpc = node.rpc(retries=1, backoff=0.05, timeout=5)
    conn = psycopg.connect(server_url)
    listener = ChainListener(conn, rpc, IngestOptions(batch_blocks=10), poll_interval_sec=0.2, clock=lambda: UNTIL_DT)
    thread = threading.Thread(target=listener.run, daemon=True)
    try:
        thread.start()
        node.stop()  # the node goes away (possibly mid-ingest)

        def checkpoint():
            with psycopg.connect(server_url) as c:
                return c.execute(
                    "SELECT status, error_message, last_height FROM core.sync_checkpoints"
                    " WHERE component = 'btc_raw_block_ingestion'"
                ).fetchone()

        status = wait_until(lambda: (cp := checkpoint()) and cp[0] == "error" and cp, timeout=60)
        assert "unreachable" in status[1] or "RpcError" in status[1]
        node = SimNodeProcess(*SYNTHETIC, port=port).start()  # back on the same port
        wait_until(lambda: (cp := checkpoint()) and cp[0] == "ok" and cp[2] == 299, timeout=120)
    finally:
        listener.stop()
        thread.join(30)
        conn.close()
        node.stop()
    with psycopg.connect(server_url) as c:
        assert c.execute("SELECT count(*) FROM raw.btc_blocks_raw").fetchone()[0] == 300


def test_malformed_block_json_writes_nothing(server_url, tmp_path: Path):
    source = FIXTURES / "bitcoin-etl"
    blocks_dir = tmp_path / "blocks"
    blocks_dir.mkdir()
    for name in ("block_without_transactions", "block_with_transactions"):
        for f in (source / name).glob("rpc_response_getblock_*_2.json"):
            shutil.copy(f, blocks_dir / f.name)
    broken = next(blocks_dir.glob("rpc_response_getblock_000000001c920d49*"))  # height 50001
    block = json.loads(broken.read_text())
    block["tx"][1]["vout"][0]["value"] = "fifty"
    broken.write_text(json.dumps(block))
    with SimNodeProcess("--blocks-dir", str(blocks_dir)) as node, psycopg.connect(server_url) as conn:
        with pytest.raises(MalformedBlockError, match=r"block 50001 .* tx 1 vout 0: amount 'fifty'"):
            backfill(
                conn,
                node.rpc(),
                "range",
                IngestOptions(batch_blocks=10),
                50000,
                50002,
                show_progress=False,
                build_until=UNTIL_DT,
            )
        conn.rollback()
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM raw.btc_blocks_raw), (SELECT count(*) FROM raw.btc_tx_raw),"
            " (SELECT count(*) FROM core.btc_primitive_block), (SELECT count(*) FROM core.sync_checkpoints)"
        ).fetchone()
    assert counts == (0, 0, 0, 0)


def test_sigterm_ends_a_long_catch_up_after_its_batch(server_url, synthetic_node):
    """`mqnode btc listen` asked to stop mid catch-up commits the batch it is in and exits 0, without
    ingesting to the tip first; the next run resumes from the checkpoint."""
    env = {
        **os.environ,
        **synthetic_node.env(),
        "MQNODE_DATABASE_URL": server_url,
        "MQNODE_BTC_BATCH_BLOCKS": "5",
        "MQNODE_BTC_FETCH_WORKERS": "2",
        "MQNODE_LOG_LEVEL": "WARNING",
    }
    listen = subprocess.Popen(
        [str(Path(sys.executable).with_name("mqnode")), "btc", "listen"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: raw_checkpoint(server_url) >= 20 or listen.poll() is not None, timeout=120, interval=0.05)
    listen.send_signal(signal.SIGTERM)
    _, err = listen.communicate(timeout=120)
    assert listen.returncode == 0, err
    stopped_at = raw_checkpoint(server_url)
    assert 20 <= stopped_at < 299, stopped_at  # stopped at a batch boundary, short of the tip
    resume = run_backfill(server_url, synthetic_node, "resume")
    _, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err
    assert raw_checkpoint(server_url) == 299
