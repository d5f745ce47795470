"""Test harness: real database servers for the whole session.

- ``postgres``: a throwaway PostgreSQL 15 cluster (app.embedded_pg, run as the ``postgres`` user when
  we are root), one fresh database per test built from a migrated template.
- ``timescaledb``: the TimescaleDB 2.23 engine (PGlite build, tests/engines) over the wire protocol;
  it has one database and accepts one connection at a time, so tests reset its tables instead.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.embedded_pg import EmbeddedPostgres
from app.migrations import upgrade_database

ROOT = Path(__file__).resolve().parent.parent
ENGINE_DIR = ROOT / "tests" / "engines"
FIXTURES = ROOT / "tests" / "fixtures"
ENGINES = ("postgres", "timescaledb")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    base = Path(tempfile.mkdtemp(prefix="mqnode-pg-"))
    os.chmod(base, 0o755)
    server = EmbeddedPostgres(base / "cluster", free_port(), database="mqnode_template")
    server.start()
    upgrade_database(server.url)
    try:
        yield server
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


class TimescaleEngine:
    """The PGlite TimescaleDB engine process."""

    def __init__(self) -> None:
        if not (ENGINE_DIR / "node_modules" / "@unni-craftsman" / "pglite").exists():
            raise RuntimeError("TimescaleDB engine not installed: run `npm ci --prefix tests/engines`")
        self.proc = subprocess.Popen(
            ["node", str(ENGINE_DIR / "timescaledb_engine.mjs"), "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            raise RuntimeError(f"TimescaleDB engine did not start: {line}{self.proc.stdout.read()}")
        self.port = int(line.split()[1])
        self.url = f"postgresql://postgres:engine@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def ts_engine() -> Iterator[TimescaleEngine]:
    engine = TimescaleEngine()
    try:
        upgrade_database(engine.url)
        yield engine
    finally:
        engine.stop()


_db_counter = itertools.count()


def fresh_postgres_db(server: EmbeddedPostgres) -> str:
    name = f"mqnode_t{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "mqnode_template"')
    return server.url.rsplit("/", 1)[0] + "/" + name


KEPT_TABLES = ("core.rollup_registry",)  # written by the migration itself


def reset_engine_tables(url: str) -> None:
    """Empty every table of the raw and core schemas and every continuous aggregate (the single-database
    engine's per-test reset); the registries start empty, tests seed what they need."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables"
                " WHERE table_schema IN ('raw', 'core') AND table_type = 'BASE TABLE'"
            ).fetchall()
            if r[0] not in KEPT_TABLES
        ]
        conn.execute("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY")
        rollups = "SELECT format('core.%I', rollup_name) FROM core.rollup_registry"
        for (rollup,) in conn.execute(rollups).fetchall():
            conn.execute(f"TRUNCATE {rollup}")  # continuous aggregates too (their materialization)


@pytest.fixture(params=ENGINES)
def db_url(request) -> str:
    """A migrated, empty database on each engine (the test runs once per engine)."""
    if request.param == "postgres":
        return fresh_postgres_db(request.getfixturevalue("pg_server"))
    engine = request.getfixturevalue("ts_engine")
    reset_engine_tables(engine.url)
    return engine.url


@pytest.fixture
def pg_url(pg_server) -> str:
    """A migrated, empty PostgreSQL database (tests that need several connections or COPY)."""
    return fresh_postgres_db(pg_server)


@pytest.fixture
def new_pg_db(pg_server):
    """Factory of further fresh PostgreSQL databases (clean-run comparisons)."""
    return lambda: fresh_postgres_db(pg_server)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(scope="session")
def early_node():
    """sim-node replaying the real mainnet chain 0-438 (bitcoinj's blk file), shared by the session."""
    from tests.simnode_proc import EARLY_CHAIN, SimNodeProcess

    with SimNodeProcess("--raw-blocks", str(EARLY_CHAIN)) as node:
        yield node
