"""Where the API reads: connections that act as the read-only role `mqnode_reader` (alembic revision 0003).

`mqnode_reader` has USAGE on schema api and SELECT on its views, nothing else. The API connects with
MQNODE_API_DATABASE_URL (a login role that is a member of mqnode_reader) or, when that is unset, with the
main URL (the migrating owner is granted membership). Either way the session runs `SET ROLE mqnode_reader`,
so it holds exactly the reader's privileges, and is made read-only as a second layer.

Reads are asynchronous (psycopg AsyncConnection on the server's event loop: no thread hand-off per request).
On plain PostgreSQL a few idle connections are kept between requests; the PGlite TimescaleDB engine takes
one connection at a time (and the write route needs it too), so there every read opens and closes its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import psycopg
from litestar.exceptions import ServiceUnavailableException
from psycopg import sql
from psycopg.types.string import TextLoader

from app.db import libpq_url

# One round trip: act as the reader, refuse writes even where a grant would allow one, UTC timestamps.
READER_SESSION = "SET ROLE mqnode_reader; SET default_transaction_read_only = on; SET TimeZone = 'UTC'"


async def open_read_connection(url: str) -> psycopg.AsyncConnection:
    """A new autocommit connection as mqnode_reader, read-only, TimeZone UTC (the API's only way to read).

    numeric values load as PostgreSQL's own text ("40435.00000000", "0.00000001"), which the API sends as
    JSON strings: exact, in the database's spelling (a Decimal would print 1E-8), and cheaper to load."""
    conn = await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True, application_name="mqnode-api")
    try:
        await conn.execute(READER_SESSION)
    except BaseException:
        await conn.close()
        raise
    conn.adapters.register_loader("numeric", TextLoader)
    return conn


async def is_pglite(conn: psycopg.AsyncConnection) -> bool:
    """The PGlite engine's version() names its compiler (the same test as app.db.engine_info)."""
    cur = await conn.execute("SELECT version()")
    (version,) = await cur.fetchone()
    return "emscripten" in version.lower() or "emcc" in version.lower()


@dataclass(frozen=True)
class Rows:
    """What one SELECT returned: column names in view order, and the rows as tuples."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class ReadDatabase:
    """The API's read connections: at most `max_open` at once, up to `keep_idle` kept between requests on
    plain PostgreSQL (none on the PGlite engine)."""

    def __init__(self, url: str, *, keep_idle: int = 4, max_open: int = 16, wait_sec: float = 10.0) -> None:
        self.url = url
        self._keep_idle = keep_idle
        self._engine_checked = False
        self._idle: list[psycopg.AsyncConnection] = []
        self._max_open = max_open
        self._open = 0
        self._wait_sec = wait_sec
        self._freed: asyncio.Event | None = None

    async def fetch(self, query: sql.Composable | str, params: dict[str, Any] | None = None) -> Rows:
        """Run one SELECT and return all its rows. A kept connection that turns out dead (server restarted)
        is dropped and the SELECT runs once more on a new one: reads are safe to repeat."""
        conn, reused = await self._checkout()
        try:
            return await self._run(conn, query, params)
        except psycopg.OperationalError:
            if not (reused and conn.broken):
                raise
        conn, _ = await self._checkout(reuse=False)
        return await self._run(conn, query, params)

    async def close(self) -> None:
        """Close the kept connections (application shutdown)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._discard(conn)

    async def _run(self, conn: psycopg.AsyncConnection, query: sql.Composable | str, params: Any) -> Rows:
        try:
            cur = await conn.execute(query, params)
            columns = [c.name for c in cur.description or ()]
            rows = await cur.fetchall() if cur.description else []
        finally:
            await self._checkin(conn)
        return Rows(columns, rows)

    async def _checkout(self, reuse: bool = True) -> tuple[psycopg.AsyncConnection, bool]:
        if reuse and self._idle:
            return self._idle.pop(), True
        await self._reserve()
        try:
            conn = await open_read_connection(self.url)
            if not self._engine_checked:
                if await is_pglite(conn):
                    self._keep_idle = 0  # one connection at a time there: never keep one idle
                self._engine_checked = True
        except BaseException:
            self._release()
            raise
        return conn, False

    async def _checkin(self, conn: psycopg.AsyncConnection) -> None:
        """Keep a healthy idle connection if there is room, else close it."""
        healthy = not (conn.closed or conn.broken)
        idle = healthy and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if idle and len(self._idle) < self._keep_idle:
            self._idle.append(conn)
            return
        await self._discard(conn)

    async def _discard(self, conn: psycopg.AsyncConnection) -> None:
        try:
            await conn.close()
        finally:
            self._release()

    async def _reserve(self) -> None:
        """Wait for room under max_open (kept idle connections count as open)."""
        deadline = asyncio.get_running_loop().time() + self._wait_sec
        while self._open >= self._max_open:
            if self._idle:  # make room: an idle connection is cheaper to close than to wait for
                await self._discard(self._idle.pop())
                continue
            self._freed = self._freed or asyncio.Event()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._freed.wait(), timeout=max(remaining, 0))
            except TimeoutError as exc:
                raise ServiceUnavailableException(
                    detail=f"all {self._max_open} API database connections are busy; try again"
                ) from exc
        self._open += 1

    def _release(self) -> None:
        self._open -= 1
        if self._freed is not None:
            self._freed.set()
            self._freed = None
