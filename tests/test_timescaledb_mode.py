"""`mqnode db upgrade` on each kind of server: TimescaleDB preloaded, installed but not preloaded, absent.

A host that installs the TimescaleDB package has the extension's files but not the preload until
postgresql.conf is edited; CREATE EXTENSION there would fail with FATAL "extension timescaledb must be
preloaded". The upgrade must instead run in plain-PostgreSQL mode with one warning naming the setting, or
fail clearly when MQNODE_REQUIRE_TIMESCALEDB=true. Run as a user runs it: the console script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

MQNODE = str(Path(sys.executable).with_name("mqnode"))


def empty_database(server, name: str) -> str:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url_of(name)


def db_upgrade(url: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MQNODE, "db", "upgrade"],
        env={**os.environ, "MQNODE_DATABASE_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def extension_installed(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()[0]


def available_not_preloaded(server) -> bool:
    with psycopg.connect(server.admin_url) as conn:
        return conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
            " AND current_setting('shared_preload_libraries') NOT LIKE '%timescaledb%'"
        ).fetchone()[0]


def test_installed_but_not_preloaded_upgrades_in_plain_mode_with_one_warning(pg_server):
    if not available_not_preloaded(pg_server):
        pytest.skip("the plain PostgreSQL cluster has no timescaledb files installed (no TimescaleDB build here)")
    url = empty_database(pg_server, "mqnode_not_preloaded")
    try:
        done = db_upgrade(url)
        assert done.returncode == 0, done.stderr
        warnings = [line for line in done.stderr.splitlines() if "shared_preload_libraries" in line]
        assert len(warnings) == 1, done.stderr
        assert "WARNING" in warnings[0] and "plain-PostgreSQL mode" in warnings[0]
        assert not extension_installed(url)
        with psycopg.connect(url) as conn:  # the schema is there, as plain tables
            assert conn.execute("SELECT count(*) FROM core.btc_primitive_10m").fetchone()[0] == 0

        refused = db_upgrade(empty_database(pg_server, "mqnode_not_preloaded_req"), MQNODE_REQUIRE_TIMESCALEDB="true")
        assert refused.returncode != 0
        assert "Traceback" not in refused.stderr, refused.stderr
        last = refused.stderr.strip().splitlines()[-1]
        assert last.startswith("mqnode: MQNODE_REQUIRE_TIMESCALEDB=true but") and "shared_preload_libraries" in last
    finally:
        pg_server.drop(url)
        pg_server.drop(pg_server.url_of("mqnode_not_preloaded_req"))


def test_require_timescaledb_on_a_server_that_has_it(ts_server):
    if ts_server.is_pglite:
        pytest.skip("needs a real TimescaleDB server (see the run's header)")
    url = empty_database(ts_server, "mqnode_required_ok")
    try:
        done = db_upgrade(url, MQNODE_REQUIRE_TIMESCALEDB="true")
        assert done.returncode == 0, done.stderr
        assert "shared_preload_libraries" not in done.stderr
        assert extension_installed(url)
    finally:
        ts_server.drop(url)


def test_require_timescaledb_is_a_boolean():
    done = subprocess.run(
        [MQNODE, "db", "upgrade"],
        env={
            **os.environ,
            "MQNODE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x",
            "MQNODE_REQUIRE_TIMESCALEDB": "maybe",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "MQNODE_REQUIRE_TIMESCALEDB must be true or false" in done.stderr


def test_upgrade_restores_the_database_settings_of_a_copy(pg_server):
    """A database copied (or restored) under another name has lost ALTER DATABASE ... SET: upgrade restores it."""
    template = f"mqnode_template_{os.getpid()}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "mqnode_copied" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "mqnode_copied" TEMPLATE "{template}"')
    url = pg_server.url_of("mqnode_copied")
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW search_path").fetchone()[0] == '"$user", public'
        done = db_upgrade(url)
        assert done.returncode == 0, done.stderr
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW search_path").fetchone()[0] == '"$user", public, raw, core, api'
            assert conn.execute("SHOW timezone").fetchone()[0] == "UTC"
    finally:
        pg_server.drop(url)
