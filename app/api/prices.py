"""GET /api/v1/btc/price/canonical (api.btc_price_canonical_<interval>; with ?method=, the 10m price under
that composition method computed on request by api.btc_price_composed_10m) and
GET /api/v1/btc/price/venues/{venue} (api.btc_price_venue_10m, one venue of the price source registry)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, ServiceUnavailableException, ValidationException
from litestar.params import PathParameter, QueryParameter
from psycopg import sql

from app.api.pages import (
    Interval,
    Page,
    PageRequest,
    TimeSeriesOperation,
    check_cursor_listing,
    page_response,
    provide_page_request,
    read_page,
)

# The venues are the registry's (each has its core.<venue>_price_10m), in the order it ranks them.
VENUES = "SELECT venue FROM api.price_source_registry GROUP BY venue ORDER BY min(priority_rank), venue"
VENUE_VIEW = "btc_price_venue_10m"
Method = Literal["volume_weighted_ohlc_v1", "median_filtered_v1", "reference_rate_v1"]  # = COMPOSITION_METHODS
# A method comparison composes on request: its range is bounded (7 days = 1,008 buckets).
MAX_COMPARE_RANGE = timedelta(days=7)
COMPOSED = sql.SQL(
    "SELECT * FROM api.btc_price_composed_10m(%(method)s, %(start)s, %(end)s - INTERVAL '1 microsecond')"
    "{after} ORDER BY bucket_start_utc {direction} LIMIT %(limit)s"
)


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
        method: Annotated[
            Method | None,
            QueryParameter(
                description="Compose the 10m price under this method on request, for comparison with the stored one"
                " (interval=10m; start and end required, at most 7 days apart; only buckets with candidate markets)."
            ),
        ] = None,
    ) -> Response[Page]:
        """The canonical BTC/USD price: api.btc_price_canonical_<interval> (NULL prices where no venue traded);
        with method, api.btc_price_composed_10m over [start, end)."""
        if method is None:
            return await read_page(state.reads, f"btc_price_canonical_{interval}", page)
        if interval != "10m" or page.start is None or page.end is None or page.end - page.start > MAX_COMPARE_RANGE:
            raise ValidationException(
                detail="method: composed on request for interval=10m with start and end at most 7 days apart"
            )
        listing = f"btc_price_composed_10m:{method}"
        check_cursor_listing(page, listing)
        params = {"method": method, "start": page.start, "end": page.end, "limit": page.limit + 1}
        after = sql.SQL("")
        if page.cursor is not None:
            after = sql.SQL(
                " WHERE bucket_start_utc > %(after)s" if page.order == "asc" else " WHERE bucket_start_utc < %(after)s"
            )
            params["after"] = page.cursor.after
        query = COMPOSED.format(after=after, direction=sql.SQL("ASC" if page.order == "asc" else "DESC"))
        return page_response(await state.reads.fetch(query, params), page, listing)

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
            PathParameter(description="A venue of the price source registry (GET /api/v1/registry/price-sources)."),
        ],
        interval: Annotated[
            Literal["10m"], QueryParameter(description="10m only: venue rows are 10-minute candles.")
        ] = "10m",
    ) -> Response[Page]:
        """One venue's sparse 10m OHLCV with quality metadata: api.btc_price_venue_10m WHERE venue = {venue}."""
        venues = [row[0] for row in (await state.reads.fetch(VENUES)).rows]
        if venue not in venues:
            raise NotFoundException(detail=f"unknown venue {venue!r}: venues are " + ", ".join(venues))
        return await read_page(state.reads, VENUE_VIEW, page, listing=f"{VENUE_VIEW}:{venue}", equals={"venue": venue})
