"""The `mqnode` command line and the listener's notifications, on PostgreSQL."""

from __future__ import annotations

import io
import os
import select
import shutil
import socket
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from app.btc.chain_sync import IngestOptions
from app.btc.listener import ChainListener
from app.cli import build_parser
from app.embedded_pg import EmbeddedPostgres
from app.progress import Progress
from tests.conftest import ROOT
from tests.simnode_proc import EARLY_CHAIN, MQNODE, SimNodeProcess


def mqnode(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MQNODE, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_db_upgrade_on_embedded_default():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp_path = Path(tempfile.mkdtemp(prefix="mqnode-embedded-"))
    os.chmod(tmp_path, 0o755)
    env = {"MQNODE_DATABASE_URL": "", "MQNODE_EMBEDDED_DIR": str(tmp_path), "MQNODE_EMBEDDED_PORT": str(port)}
    try:
        result = mqnode("db", "upgrade", env=env)
        assert result.returncode == 0, result.stderr
        server = EmbeddedPostgres(tmp_path / "postgres", port)
        with psycopg.connect(server.url) as conn:
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT table_schema || '.' || table_name FROM information_schema.tables"
                    " WHERE table_schema IN ('raw', 'core')"
                ).fetchall()
            }
            # Analysts' sessions resolve the public names without schema prefixes.
            conn.execute("SELECT count(*) FROM btc_primitive_10m, btc_blocks_raw, sync_checkpoints")
        assert {
            "raw.btc_blocks_raw",
            "raw.btc_tx_raw",
            "core.btc_primitive_block",
            "core.btc_primitive_10m",
            "core.btc_reorg_events",
            "core.sync_checkpoints",
        } <= tables
        again = mqnode("db", "upgrade", env=env)  # re-running is harmless
        assert again.returncode == 0, again.stderr
    finally:
        EmbeddedPostgres(tmp_path / "postgres", port).destroy()
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_backfill_range_command_reports_progress(server_url):
    with SimNodeProcess("--raw-blocks", str(EARLY_CHAIN)) as node:
        env = {**node.env(), "MQNODE_DATABASE_URL": server_url}
        result = mqnode(
            "btc",
            "backfill",
            "--mode",
            "range",
            "--start-height",
            "100",
            "--end-height",
            "199",
            "--until",
            "2009-01-20T00:00:00Z",
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert "blocks/s" in result.stderr and "tx/s" in result.stderr
        assert "heights 100..199, 100 blocks" in result.stdout
        bad = mqnode("btc", "backfill", "--mode", "range", "--start-height", "5", env=env)
        assert bad.returncode != 0 and "needs --start-height and --end-height" in bad.stderr
        with psycopg.connect(server_url) as conn:
            heights = conn.execute("SELECT min(height), max(height), count(*) FROM raw.btc_blocks_raw").fetchone()
            timeline = conn.execute(
                "SELECT min(bucket_start_utc), max(bucket_start_utc) FROM core.btc_primitive_10m"
            ).fetchone()
            first_block_bucket = conn.execute(
                "SELECT bucket_start_utc FROM core.btc_primitive_block WHERE height = 100"
            ).fetchone()[0]
            # Range mode may start above a gap: the raw checkpoint is the top of the contiguous run.
            (checkpoint,) = conn.execute(
                "SELECT last_height FROM core.sync_checkpoints WHERE component = 'btc_raw_block_ingestion'"
            ).fetchone()
        assert heights == (100, 199, 100) and checkpoint == 199
        # --until: the 10m build after the blocks stops at that bucket (without it: now, 17 years of buckets).
        assert timeline == (first_block_bucket, datetime(2009, 1, 20, tzinfo=UTC))


def subcommand_paths(parser=None, path=()) -> list[tuple[str, ...]]:
    """Every command path of the argparse tree: ("db",), ("db", "upgrade"), ("btc",), ..."""
    import argparse

    parser = parser or build_parser()
    paths = []
    for action in parser._actions:  # argparse keeps its subcommands here
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                paths.append((*path, name))
                paths.extend(subcommand_paths(child, (*path, name)))
    return paths


def test_every_subcommand_has_help(capsys):
    paths = subcommand_paths()
    assert ("sim-node",) in paths and ("btc", "backfill") in paths and len(paths) >= 20
    for path in [(), *paths]:
        try:
            build_parser().parse_args([*path, "--help"])
        except SystemExit as exit:
            assert exit.code == 0, path
        out = capsys.readouterr().out
        assert out.startswith(f"usage: mqnode {' '.join(path)}".rstrip()), (path, out[:200])


def test_sim_node_takes_its_options_as_documented():
    """README: `mqnode sim-node --port P ... --synthetic ...`; argparse.REMAINDER once refused every option."""
    argv = ["--port", "18443", "--rpc-user", "u", "--rpc-password", "w", "--synthetic", "--count", "20"]
    args = build_parser().parse_args(["--log-level", "DEBUG", "sim-node", *argv])
    assert args.command == "sim-node" and args.port == 18443 and args.synthetic and args.count == 20
    assert args.sim_node_argv == argv  # handed to sim-node's own main as given
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sim-node", "--port", "not-a-port"])


def test_progress_line_has_rates_and_eta():
    stream = io.StringIO()
    progress = Progress("backfill", 200, "blocks", stream=stream)
    progress.advance(50, 5000)
    line = progress.line()
    assert "50/200 blocks" in line and "blocks/s" in line and "tx/s" in line and "ETA" in line


def test_listener_notifies_after_commit_and_advances_idle_timeline(server_url):
    clock = [datetime(2009, 1, 9, 6, 0, tzinfo=UTC)]
    with (
        SimNodeProcess("--raw-blocks", str(EARLY_CHAIN)) as node,
        psycopg.connect(server_url, autocommit=True) as listen_conn,
        psycopg.connect(server_url) as conn,
    ):
        listen_conn.execute("LISTEN raw_block_ready")
        listen_conn.execute("LISTEN primitive_ready")
        listener = ChainListener(conn, node.rpc(), IngestOptions(batch_blocks=200), clock=lambda: clock[0])
        assert listener.sync_once() == 439
        select.select([listen_conn.pgconn.socket], [], [], 5)
        channels = [n.channel for n in listen_conn.notifies(timeout=1, stop_after=10)]
        assert channels.count("raw_block_ready") == 3 and "primitive_ready" in channels
        # Idle: no new block, the clock moves on -> the timeline reaches the current bucket.
        clock[0] = datetime(2009, 1, 20, 12, 34, tzinfo=UTC)
        assert listener.sync_once() == 0
        (last, height) = conn.execute(
            "SELECT max(bucket_start_utc), max(best_block_height_last) FROM core.btc_primitive_10m"
        ).fetchone()
        assert (last, height) == (datetime(2009, 1, 20, 12, 30, tzinfo=UTC), 438)


def test_demo_runs_every_lane_end_to_end():
    """README's run command (scripts/run.sh -> mqnode demo) on the embedded default, briefly: sim-node's live
    chain, the replayed real candles through the binance loader, every lane, the API, URLs and SQL printed."""
    from tests.conftest import free_port

    tmp_path = Path(tempfile.mkdtemp(prefix="mqnode-demo-test-"))
    os.chmod(tmp_path, 0o755)
    db_port, api_port = free_port(), free_port()
    env = {
        "MQNODE_DATABASE_URL": "",
        "MQNODE_BTC_RPC_URL": "",
        "MQNODE_EMBEDDED_DIR": str(tmp_path),
        "MQNODE_EMBEDDED_PORT": str(db_port),
        "MQNODE_API_PORT": str(api_port),
    }
    try:
        result = mqnode(
            "demo", "--port", "0", "--days", "1", "--txs-per-block", "20", "--mine-every", "3", "--duration", "75",
            env=env, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        out = result.stdout
        assert "MQNODE is up" in out, out[-3000:]
        assert f"curl http://127.0.0.1:{api_port}/api/v1/btc/health" in out and "psql 'postgresql://" in out
        assert "[chain]" in out and "[api]" in out and "demo stopped" in out
        server = EmbeddedPostgres(tmp_path / "postgres", db_port, database="mqnode_demo")
        server.start()
        try:
            with psycopg.connect(server.url) as conn:
                (first, tip, venue_rows, priced, metric_rows, hours, lanes) = conn.execute(
                    "SELECT (SELECT min(height) FROM raw.btc_blocks_raw), (SELECT max(height) FROM raw.btc_blocks_raw),"
                    " (SELECT count(*) FROM core.binance_price_10m WHERE quality_status = 'complete'),"
                    " (SELECT count(*) FROM core.mq_btc_price_10m WHERE close_price_usd IS NOT NULL),"
                    " (SELECT count(*) FROM core.btc_nvt_10m WHERE nvt_raw IS NOT NULL),"
                    " (SELECT count(*) FROM core.btc_primitive_1h),"
                    " (SELECT count(*) FROM core.sync_checkpoints WHERE \"interval\" = 'heartbeat')"
                ).fetchone()
            assert first == 0 and tip > 100  # a day of synthetic blocks from genesis, then live ones
            assert venue_rows > 100 and priced > 100 and metric_rows > 50 and hours >= 24 and lanes >= 6
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
