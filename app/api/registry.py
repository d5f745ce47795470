"""GET /api/v1/registry/metrics (api.metric_registry) and /api/v1/registry/price-sources
(api.price_source_registry): what is computed and fetched, with each one's progress."""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import State
from litestar.exceptions import ServiceUnavailableException

from app.api.pages import Page

METRICS_QUERY = 'SELECT * FROM api.metric_registry ORDER BY metric_name, "interval"'
PRICE_SOURCES_QUERY = "SELECT * FROM api.price_source_registry ORDER BY priority_rank, source_name"


class RegistryController(Controller):
    path = "/api/v1/registry"
    tags = ["registry"]

    @get("/metrics", raises=[ServiceUnavailableException])
    async def list_metrics(self, state: State) -> Page:
        """Every (metric, interval): its SQL function, output_table, dependencies and checkpoint state."""
        return Page(items=(await state.reads.fetch(METRICS_QUERY)).dicts(), next_cursor=None)

    @get("/price-sources", raises=[ServiceUnavailableException])
    async def list_price_sources(self, state: State) -> Page:
        """Every price venue: how it is fetched, its rank and its checkpoint state."""
        return Page(items=(await state.reads.fetch(PRICE_SOURCES_QUERY)).dicts(), next_cursor=None)
