"""Test harness: real database servers for the whole session.

- ``postgres``: a throwaway PostgreSQL 15 cluster (app.embedded_pg, run as the ``postgres`` user when
  we are root), one fresh database per test built from a migrated template.
- ``timescaledb``: the real TimescaleDB server where it is installed: a second throwaway cluster with
  ``shared_preload_libraries = 'timescaledb'`` and its background workers on (policies fire during the
  tests, as in production), one fresh database per test from a migrated template;
  ``MQNODE_TEST_TIMESCALEDB_URL`` (a superuser URL) points the suite at an existing server instead.
  Where no server has the extension (a fresh machine without ../shared/vendor) the PGlite build of
  TimescaleDB 2.23 (tests/engines) stands in: one database, one connection at a time, no COPY, no
  workers; the test run's header says which engine ran.

Fixtures: ``db_url`` runs a test on both engines (PGlite included); ``server_url`` / ``new_server_db``
run it on both real servers (skipped on PGlite: several connections, COPY, subprocess lanes);
``pg_url`` / ``new_pg_db`` are plain PostgreSQL only; ``ts_url`` is the TimescaleDB engine only.
"""

from __future__ import annotations

import contextlib
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

from app.embedded_pg import EmbeddedPostgres, find_pg_bin
from app.migrations import upgrade_database

ROOT = Path(__file__).resolve().parent.parent
ENGINE_DIR = ROOT / "tests" / "engines"
FIXTURES = ROOT / "tests" / "fixtures"
ENGINES = ("postgres", "timescaledb")
TEMPLATE = "mqnode_template"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_db_counter = itertools.count()


class ServerDatabases:
    """Fresh databases on one real server, each a copy of a migrated template; dropped after their test."""

    def __init__(self, admin_url: str, kind: str):
        self.admin_url = admin_url
        self.kind = kind  # "postgres" or "timescaledb"
        self.is_pglite = False

    def url_of(self, name: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + "/" + name

    def create_template(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}_{os.getpid()}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{TEMPLATE}_{os.getpid()}"')
        template_url = self.url_of(f"{TEMPLATE}_{os.getpid()}")
        upgrade_database(template_url)
        with psycopg.connect(template_url, autocommit=True) as conn:
            if self.kind == "timescaledb":
                # Its scheduler holds a connection to the template, which CREATE DATABASE ... TEMPLATE refuses.
                conn.execute("SELECT _timescaledb_functions.stop_background_workers()")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{TEMPLATE}_{os.getpid()}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')

    def fresh(self) -> str:
        name = f"mqnode_t{os.getpid()}_{next(_db_counter)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for attempt in range(50):
                try:
                    conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}_{os.getpid()}"')
                    break
                except psycopg.errors.ObjectInUse:  # a worker still leaving the template
                    if attempt == 49:
                        raise
                    time.sleep(0.1)
            # CREATE DATABASE ... TEMPLATE copies no ALTER DATABASE ... SET (search_path, timezone): copy them.
            settings = conn.execute(
                "SELECT unnest(s.setconfig) FROM pg_db_role_setting AS s JOIN pg_database AS d"
                " ON d.oid = s.setdatabase WHERE d.datname = %s AND s.setrole = 0",
                (f"{TEMPLATE}_{os.getpid()}",),
            ).fetchall()
            for (setting,) in settings:
                key, _, value = setting.partition("=")
                conn.execute(f'ALTER DATABASE "{name}" SET {key} = {value}')
        return self.url_of(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1].split("?", 1)[0]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_template(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{TEMPLATE}_{os.getpid()}" WITH IS_TEMPLATE false')
            conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}_{os.getpid()}" WITH (FORCE)')


def start_cluster(prefix: str, settings: dict[str, str] | None = None) -> tuple[EmbeddedPostgres, Path]:
    base = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(base, 0o755)
    server = EmbeddedPostgres(base / "cluster", free_port(), database="postgres", server_settings=settings or {})
    server.start()
    return server, base


@contextlib.contextmanager
def cluster_databases(kind: str, settings: dict[str, str] | None = None) -> Iterator[ServerDatabases]:
    """A throwaway cluster of ``kind`` with its migrated template, destroyed afterwards."""
    server, base = start_cluster(f"mqnode-{kind}-", settings)
    databases = ServerDatabases(server.admin_url, kind)
    try:
        databases.create_template()
        yield databases
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ServerDatabases]:
    with cluster_databases("postgres") as databases:
        yield databases


# The real server's settings: preloaded, enough workers for a scheduler per live test database, and a
# launcher that notices a new database within a second (its default is a minute), so policies run mid-test.
TIMESCALEDB_SETTINGS = {
    "shared_preload_libraries": "timescaledb",
    "max_worker_processes": "64",
    "timescaledb.max_background_workers": "48",
    "timescaledb.bgw_launcher_poll_time": "1000",
    "timescaledb.telemetry_level": "off",
}


def timescaledb_server_installed() -> bool:
    try:
        return (find_pg_bin().parent / "lib" / "timescaledb.so").exists()
    except Exception:
        return False


class TimescaleEngine:
    """The PGlite TimescaleDB engine process (the fallback: one database, one connection)."""

    is_pglite = True
    kind = "timescaledb"

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

    def fresh(self) -> str:
        reset_engine_tables(self.url)
        return self.url

    def drop(self, url: str) -> None:
        pass

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def timescaledb_engine_choice() -> str:
    """Which TimescaleDB engine this run uses, in one line (also the run's header)."""
    if os.environ.get("MQNODE_TEST_TIMESCALEDB_URL"):
        return "TimescaleDB engine: the server at MQNODE_TEST_TIMESCALEDB_URL"
    if os.environ.get("MQNODE_TEST_TIMESCALEDB_ENGINE") != "pglite" and timescaledb_server_installed():
        return f"TimescaleDB engine: a local TimescaleDB server cluster ({find_pg_bin()}, preloaded, workers on)"
    return (
        "TimescaleDB engine: PGlite fallback (no PostgreSQL server with the timescaledb extension here, e.g. no"
        " ../shared/vendor to build it from; set MQNODE_TEST_TIMESCALEDB_URL to use a server): tests that need"
        " several connections or COPY run on plain PostgreSQL only"
    )


def pytest_report_header(config):
    return timescaledb_engine_choice()


@pytest.fixture(scope="session")
def ts_server() -> Iterator[ServerDatabases | TimescaleEngine]:
    """The session's TimescaleDB engine: the real server where there is one, else PGlite."""
    external = os.environ.get("MQNODE_TEST_TIMESCALEDB_URL")
    if external:
        databases = ServerDatabases(external, "timescaledb")
        databases.create_template()
        try:
            yield databases
        finally:
            databases.drop_template()
        return
    if os.environ.get("MQNODE_TEST_TIMESCALEDB_ENGINE") != "pglite" and timescaledb_server_installed():
        with cluster_databases("timescaledb", TIMESCALEDB_SETTINGS) as databases:
            yield databases
        return
    engine = TimescaleEngine()
    try:
        upgrade_database(engine.url)
        yield engine
    finally:
        engine.stop()


def fresh_postgres_db(server: ServerDatabases) -> str:
    return server.fresh()


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


def _database(request, engine: str) -> str:
    server = request.getfixturevalue("pg_server" if engine == "postgres" else "ts_server")
    url = server.fresh()
    request.addfinalizer(lambda: server.drop(url))
    return url


@pytest.fixture(params=ENGINES)
def db_url(request) -> str:
    """A migrated, empty database on each engine (the test runs once per engine)."""
    return _database(request, request.param)


@pytest.fixture(params=ENGINES)
def server_engine(request) -> str:
    """Each real server engine; the PGlite fallback is skipped (one connection, no COPY)."""
    if request.param == "timescaledb" and request.getfixturevalue("ts_server").is_pglite:
        pytest.skip("needs a real TimescaleDB server (PGlite: one connection, no COPY); see the run's header")
    return request.param


@pytest.fixture
def server_url(request, server_engine) -> str:
    """A migrated, empty database on each real server (plain PostgreSQL and the TimescaleDB server)."""
    return _database(request, server_engine)


@pytest.fixture
def new_server_db(request, server_engine):
    """Factory of further fresh databases on the same engine as ``server_url`` (clean-run comparisons)."""
    return lambda: _database(request, server_engine)


@pytest.fixture
def pg_url(request) -> str:
    """A migrated, empty plain PostgreSQL database."""
    return _database(request, "postgres")


@pytest.fixture
def new_pg_db(request):
    """Factory of further fresh plain PostgreSQL databases."""
    return lambda: _database(request, "postgres")


@pytest.fixture
def ts_url(request) -> str:
    """A migrated, empty database on the TimescaleDB engine (real server, or the PGlite fallback)."""
    return _database(request, "timescaledb")


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
