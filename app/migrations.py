"""Helpers the alembic revisions and env.py share: raw SQL execution and the sql/ re-apply step."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from sqlalchemy.engine import Connection

from app.settings import PROJECT_DIR, Settings

log = logging.getLogger(__name__)

SQL_FUNCTIONS_DIR = PROJECT_DIR / "sql" / "functions"
AGGREGATES_DIR = PROJECT_DIR / "sql" / "aggregates"
_PREFIX = re.compile(r"^(\d+)_")


def execute_sql(connection: Connection, sql: str) -> None:
    """Run a multi-statement SQL text as is (psycopg's simple protocol: no bind parameters, no ``:name`` parsing)."""
    connection.connection.driver_connection.execute(sql)


class TimescaleDBRequiredError(RuntimeError):
    """MQNODE_REQUIRE_TIMESCALEDB=true and the server cannot give TimescaleDB."""


def timescaledb_available(connection: Connection) -> bool:
    """Whether ``CREATE EXTENSION timescaledb`` can succeed on this server.

    The extension's files being installed is not enough: unless its library is preloaded
    (``shared_preload_libraries``), CREATE EXTENSION fails with FATAL "extension timescaledb must be
    preloaded" and the connection is gone. A loaded library defines the ``timescaledb.license`` setting
    (preloaded on a server; loaded at start on the PGlite engine), so that is the test. Installed but not
    loaded: plain-PostgreSQL mode with one warning naming the setting, or an error with
    MQNODE_REQUIRE_TIMESCALEDB=true.
    """
    installed, loaded, preload = connection.connection.driver_connection.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
        " current_setting('timescaledb.license', true) IS NOT NULL"
        " OR 'timescaledb' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')),"
        " current_setting('shared_preload_libraries')"
    ).fetchone()
    required = Settings.from_env().require_timescaledb
    if installed and loaded:
        return True
    if installed:
        message = (
            "TimescaleDB is installed on this server but not preloaded (shared_preload_libraries = "
            f"{preload!r}): add timescaledb to shared_preload_libraries in postgresql.conf and restart the server"
        )
    else:
        message = "the TimescaleDB extension is not installed on this server"
    if required:
        raise TimescaleDBRequiredError(f"MQNODE_REQUIRE_TIMESCALEDB=true but {message}")
    if installed:
        log.warning(
            "%s; migrating in plain-PostgreSQL mode (hypertables, compression and continuous aggregates are not used)",
            message,
        )
    return False


def timescaledb_installed(connection: Connection) -> bool:
    row = connection.connection.driver_connection.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    return bool(row[0])


def ordered_sql_files(directory: Path) -> list[Path]:
    """The *.sql files of a directory ordered by their numeric prefix (``010_name.sql``)."""
    files = [p for p in directory.glob("*.sql") if _PREFIX.match(p.name)]
    unnumbered = [p.name for p in directory.glob("*.sql") if not _PREFIX.match(p.name)]
    if unnumbered:
        raise RuntimeError(f"SQL files without a numeric prefix in {directory}: {', '.join(sorted(unnumbered))}")
    return sorted(files, key=lambda p: (int(_PREFIX.match(p.name).group(1)), p.name))


def apply_sql_functions(connection: Connection, directory: Path = SQL_FUNCTIONS_DIR) -> list[str]:
    """Re-apply every CREATE OR REPLACE file of sql/functions (run after each upgrade)."""
    applied = []
    for path in ordered_sql_files(directory):
        try:
            execute_sql(connection, path.read_text())
        except Exception as exc:
            raise RuntimeError(f"applying {path.relative_to(PROJECT_DIR)} failed: {exc}") from exc
        applied.append(path.name)
    # The registries get their seeded rows; rows already there keep their edits.
    execute_sql(connection, "SELECT core.seed_price_source_registry(); SELECT core.seed_metric_registry();")
    return applied


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """`alembic upgrade <revision>` against database_url, then sql/functions re-applied (env.py)."""
    from alembic.config import Config

    from alembic import command

    config = Config(str(PROJECT_DIR / "alembic.ini"))
    config.attributes["database_url"] = database_url
    command.upgrade(config, revision)
