"""GET /health (liveness that touches the database), GET /api/v1/btc/health (the api.btc_health row) and
GET /api/v1/timescaledb/jobs (api.timescaledb_jobs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.exceptions import ServiceUnavailableException
from psycopg import sql

from app.api.database import ReadDatabase
from app.api.pages import Page


class Liveness(msgspec.Struct):
    """The node's overall status from api.btc_health: ok, degraded or starting."""

    status: str


class BtcHealth(msgspec.Struct):
    """api.btc_health: how far each stage got, lags and backlogs between stages, errors, stale lanes and the
    TimescaleDB jobs (the timescaledb_* fields are null on plain PostgreSQL, which has no jobs)."""

    node_tip: int | None
    node_tip_seen_at: datetime | None
    last_raw_height: int | None
    last_primitive_height: int | None
    last_primitive_bucket: datetime | None
    last_canonical_price_bucket: datetime | None
    last_priced_bucket: datetime | None
    raw_lag_blocks: int | None
    primitive_backlog_blocks: int | None
    primitive_lag_sec: int | None
    price_backlog_buckets: int | None
    metric_backlog_buckets: int | None
    last_rollup_1h_bucket: datetime | None
    last_rollup_24h_bucket: datetime | None
    checkpoints_in_error: list[dict[str, Any]]
    lanes: list[dict[str, Any]]
    stale_lanes: list[str]
    status: str
    timescaledb_jobs_total: int | None
    timescaledb_jobs_failing: int | None
    timescaledb_jobs_stale: int | None
    timescaledb_job_problems: list[dict[str, Any]] | None


HEALTH_QUERY = sql.SQL("SELECT {columns} FROM api.btc_health").format(
    columns=sql.SQL(", ").join(sql.Identifier(name) for name in BtcHealth.__struct_fields__)
)

JOBS_QUERY = "SELECT * FROM api.timescaledb_jobs ORDER BY job_id"


async def read_health(reads: ReadDatabase) -> BtcHealth:
    result = await reads.fetch(HEALTH_QUERY)
    if not result.rows:
        raise ServiceUnavailableException(detail="api.btc_health returned no row")
    return BtcHealth(**result.dicts()[0])


class HealthController(Controller):
    tags = ["health"]

    @get("/health", raises=[ServiceUnavailableException])
    async def liveness(self, state: State) -> Liveness:
        """Alive and able to read the database: {"status": ok | degraded | starting}; 503 when it cannot."""
        return Liveness((await read_health(state.reads)).status)

    @get("/api/v1/btc/health", raises=[ServiceUnavailableException])
    async def btc_health(self, state: State) -> BtcHealth:
        """The api.btc_health row: node tip, stage heights and buckets, lags, checkpoints in error, lanes, and
        the TimescaleDB jobs failing or stale (null on plain PostgreSQL)."""
        return await read_health(state.reads)

    @get("/api/v1/timescaledb/jobs", raises=[ServiceUnavailableException])
    async def timescaledb_jobs(self, state: State) -> Page:
        """Every TimescaleDB policy job (api.timescaledb_jobs): last run and status, latest error, health ok |
        failing | stale; no items on plain PostgreSQL. Intervals are ISO 8601 durations."""
        return Page(items=(await state.reads.fetch(JOBS_QUERY)).dicts(), next_cursor=None)
