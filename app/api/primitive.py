"""GET /api/v1/btc/primitive: the on-chain backbone, api.btc_primitive_10m / _1h / _24h."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ServiceUnavailableException
from litestar.params import QueryParameter

from app.api.pages import (
    Interval,
    Page,
    PageRequest,
    TimeSeriesOperation,
    provide_page_request,
    read_page,
)


class PrimitiveController(Controller):
    path = "/api/v1/btc/primitive"
    tags = ["on-chain"]
    dependencies = {"page": Provide(provide_page_request, sync_to_thread=False)}

    @get(operation_class=TimeSeriesOperation, raises=[ServiceUnavailableException])
    async def list_primitive(
        self,
        state: State,
        page: NamedDependency[PageRequest],
        interval: Annotated[Interval, QueryParameter(description="10m, 1h or 24h (UTC days).")] = "10m",
    ) -> Response[Page]:
        """Rows of api.btc_primitive_<interval> (flows, carried chain state, prices), keyed by bucket_start_utc."""
        return await read_page(state.reads, f"btc_primitive_{interval}", page)
