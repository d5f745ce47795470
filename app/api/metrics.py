"""GET /api/v1/btc/metrics/{metric}: a registered metric's rows, read from api.<output_table>.

The metric is looked up in api.metric_registry by metric_name (nvt_raw, market_cap_usd, ...) or by the stem
of its table (nvt for btc_nvt_10m). The registry's output_table is only ever read when it names a view in
schema api that has bucket_start_utc and that the reader may SELECT; it is then quoted as an identifier.
Anything else (a core table, a name with quotes, a view that is not a time series) is refused with 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, ServiceUnavailableException
from litestar.openapi.spec import Example
from litestar.params import PathParameter, QueryParameter

from app.api.database import ReadDatabase
from app.api.pages import (
    KEY,
    Interval,
    Page,
    PageRequest,
    TimeSeriesOperation,
    provide_page_request,
    read_page,
)

# The seeded metrics (core.seed_metric_registry, with core.seed_coin_age_metric_registry's), for the OpenAPI
# document; the registry is the authority.
METRIC_EXAMPLES = (
    "nvt_raw",
    "market_cap_usd",
    "miner_revenue",
    "fee_metrics",
    "hash_rate",
    "nvt",
    "realized_cap",
    "sopr",
    "coin_days_destroyed",
    "supply_age_bands",
    "holder_supply",
)

REGISTRY_QUERY = """
SELECT
    r.metric_name,
    r."interval",
    r.output_table,
    EXISTS (
        SELECT 1
        FROM pg_catalog.pg_class AS c
        INNER JOIN pg_catalog.pg_namespace AS n ON c.relnamespace = n.oid
        INNER JOIN pg_catalog.pg_attribute AS a ON c.oid = a.attrelid
        WHERE n.nspname = 'api' AND c.relkind = 'v' AND c.relname = r.output_table
            AND a.attname = %(key)s AND NOT a.attisdropped AND has_table_privilege(c.oid, 'SELECT')
    ) AS is_api_series
FROM api.metric_registry AS r
ORDER BY r.metric_name, r."interval"
"""


@dataclass(frozen=True)
class RegisteredMetric:
    metric_name: str
    interval: str
    output_table: str
    is_api_series: bool


async def resolve_metric(reads: ReadDatabase, metric: str, interval: str) -> RegisteredMetric:
    """The registry row of (metric, interval) whose output_table is a readable api view, or a 404 saying why."""
    result = await reads.fetch(REGISTRY_QUERY, {"key": KEY})
    registry = [RegisteredMetric(*row) for row in result.rows]
    rows = [r for r in registry if r.metric_name == metric] or [
        r for r in registry if r.output_table == f"btc_{metric}_{r.interval}"
    ]
    if not rows:
        known = sorted({r.metric_name for r in registry})
        raise NotFoundException(
            detail=f"unknown metric {metric!r}: registered metrics are {', '.join(known) or 'none'}"
            " (see /api/v1/registry/metrics)"
        )
    found = next((r for r in rows if r.interval == interval), None)
    if found is None:
        raise NotFoundException(
            detail=f"metric {rows[0].metric_name!r} is not registered at interval {interval}; "
            f"its intervals: {', '.join(r.interval for r in rows)}"
        )
    if not found.is_api_series:
        raise NotFoundException(
            detail=f"metric {found.metric_name!r} at {interval} names output_table {found.output_table!r}, "
            "which is not a readable time-series view in schema api"
        )
    return found


class MetricController(Controller):
    path = "/api/v1/btc/metrics"
    tags = ["metrics"]
    dependencies = {"page": Provide(provide_page_request, sync_to_thread=False)}

    @get(
        "/{metric:str}",
        operation_class=TimeSeriesOperation,
        raises=[NotFoundException, ServiceUnavailableException],
    )
    async def list_metric(
        self,
        state: State,
        page: NamedDependency[PageRequest],
        metric: Annotated[
            str,
            PathParameter(
                description="metric_name (e.g. nvt_raw) or table stem (e.g. nvt); see /api/v1/registry/metrics.",
                examples=[Example(value=name) for name in METRIC_EXAMPLES],
            ),
        ],
        interval: Annotated[Interval, QueryParameter(description="10m, 1h or 24h (UTC days).")] = "10m",
    ) -> Response[Page]:
        """A registered metric's rows from its api view (api.metric_registry.output_table)."""
        found = await resolve_metric(state.reads, metric, interval)
        return await read_page(state.reads, found.output_table, page)
