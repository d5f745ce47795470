"""GET /api/v1/btc/price/canonical (api.btc_price_canonical_<interval>) and
GET /api/v1/btc/price/venues/{venue} (api.btc_price_venue_10m, one venue)."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, ServiceUnavailableException
from litestar.openapi.spec import Example
from litestar.params import PathParameter, QueryParameter

from app.api.pages import (
    Interval,
    Page,
    PageRequest,
    TimeSeriesOperation,
    provide_page_request,
    read_page,
)

# The venues of the data contract (core.<venue>_price_10m), in the order the registry ranks them.
VENUES = ("bitstamp", "coinbase", "bybit", "binance", "okx", "bitfinex")
VENUE_VIEW = "btc_price_venue_10m"


class PriceController(Controller):
    path = "/api/v1/btc/price"
    tags = ["prices"]
    dependencies = {"page": Provide(provide_page_request, sync_to_thread=False)}

    @get("/canonical", operation_class=TimeSeriesOperation, raises=[ServiceUnavailableException])
    async def list_canonical(
        self,
        state: State,
        page: NamedDependency[PageRequest],
        interval: Annotated[Interval, QueryParameter(description="10m, 1h or 24h (UTC days).")] = "10m",
    ) -> Response[Page]:
        """The canonical BTC/USD price: api.btc_price_canonical_<interval> (NULL prices where no venue traded)."""
        return await read_page(state.reads, f"btc_price_canonical_{interval}", page)

    @get(
        "/venues/{venue:str}",
        operation_class=TimeSeriesOperation,
        raises=[NotFoundException, ServiceUnavailableException],
    )
    async def list_venue(
        self,
        state: State,
        page: NamedDependency[PageRequest],
        venue: Annotated[
            str,
            PathParameter(description="One of " + ", ".join(VENUES) + ".", examples=[Example(value=v) for v in VENUES]),
        ],
        interval: Annotated[
            Literal["10m"], QueryParameter(description="10m only: venue rows are 10-minute candles.")
        ] = "10m",
    ) -> Response[Page]:
        """One venue's sparse 10m OHLCV with quality metadata: api.btc_price_venue_10m WHERE venue = {venue}."""
        if venue not in VENUES:
            raise NotFoundException(detail=f"unknown venue {venue!r}: venues are " + ", ".join(VENUES))
        return await read_page(state.reads, VENUE_VIEW, page, listing=f"{VENUE_VIEW}:{venue}", equals={"venue": venue})
