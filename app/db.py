"""Database connections and the facts about the engine behind them (TimescaleDB or plain PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg

from app.settings import Settings


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy spelling of a libpq URL (driver psycopg 3)."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql+psycopg", "postgresql+psycopg2"):
        return "postgresql+psycopg://" + rest
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"MQNODE_DATABASE_URL must be a postgresql:// URL, got scheme {scheme!r}")
    return "postgresql+psycopg://" + rest


def libpq_url(url: str) -> str:
    """The libpq spelling of a URL that may carry a SQLAlchemy driver suffix."""
    scheme, _, rest = url.partition("://")
    if "+" in scheme:
        scheme = scheme.split("+", 1)[0]
    return f"{scheme}://{rest}"


def resolve_database_url(settings: Settings) -> str:
    """MQNODE_DATABASE_URL, or the embedded PostgreSQL under the project (started on demand)."""
    if settings.database_url:
        urlsplit(settings.database_url)
        return libpq_url(settings.database_url)
    from app.embedded_pg import EmbeddedPostgres

    server = EmbeddedPostgres(settings.embedded_dir / "postgres", settings.embedded_port)
    server.start()
    return server.url


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """One psycopg connection (the PGlite engine allows one at a time: close it when done)."""
    return psycopg.connect(libpq_url(url), autocommit=autocommit, application_name="mqnode")


@dataclass(frozen=True)
class EngineInfo:
    """What the connected server can do."""

    server_version_num: int
    has_timescaledb: bool
    is_pglite: bool

    @property
    def supports_copy(self) -> bool:
        # COPY FROM STDIN kills the PGlite wire server (docs/architecture.md); batched INSERT there.
        return not self.is_pglite


def require_idle(conn: psycopg.Connection, what: str) -> None:
    """Fail loudly when a caller left a transaction open: `what` must commit on its own."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError(f"{what} needs a connection outside any transaction (found one open)")


def engine_info(conn: psycopg.Connection) -> EngineInfo:
    """Facts about the server; leaves the connection as it found it (no transaction left open)."""
    was_idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    version_num, version, has_ts = conn.execute(
        "SELECT current_setting('server_version_num')::int, version(),"
        " EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    if was_idle and not conn.autocommit:
        conn.rollback()
    return EngineInfo(version_num, bool(has_ts), "emscripten" in version.lower() or "emcc" in version.lower())
