"""`mqnode rollups refresh`: bring the 1h/24h rollups up to their 10m sources, in dependency order.

Each rollup is refreshed by `CALL core.refresh_rollup(name)` on an autocommit connection (TimescaleDB's
refresh_continuous_aggregate cannot run inside a transaction block); the procedure works out the window
from the rollup's checkpoint and its source's, on both engines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RollupRefresh:
    rollup: str
    from_bucket: datetime | None
    to_bucket: datetime | None


def refresh_rollups(conn: psycopg.Connection) -> list[RollupRefresh]:
    """Refresh every rollup once, 1h before the 24h built on it. Needs an autocommit connection."""
    if not conn.autocommit:
        raise RuntimeError("refresh_rollups needs an autocommit connection (continuous aggregate refresh)")
    names = [r[0] for r in conn.execute("SELECT rollup_name FROM core.rollup_registry ORDER BY refresh_order")]
    done = []
    for name in names:
        window = conn.execute("SELECT from_bucket, to_bucket FROM core.rollup_window(%s)", (name,)).fetchone()
        conn.execute("CALL core.refresh_rollup(%s)", (name,))
        done.append(RollupRefresh(name, *(window or (None, None))))
        if window:
            log.debug("rollup %s refreshed over [%s, %s)", name, *window)
    return done
