"""Pages of a time-series view: the shared query parameters, the keyset cursor, the SELECT and the response.

Every time-series view in schema api is keyed by bucket_start_utc (per venue for the venue view, whose
route filters one venue); per-block views are keyed by height instead (start_height / end_height). A page is

    SELECT * FROM api.<view> WHERE [filters] AND <key> >= start AND <key> < end
        AND <key> > <cursor key>          -- < for order=desc
    ORDER BY <key> [ASC|DESC] LIMIT limit + 1

The extra row only says whether another page exists; there is never a COUNT(*) or an OFFSET. The cursor is
opaque to clients: base64url of {"s": listing, "o": order, "k": the page's last key (time or height)}.
"""

from __future__ import annotations

import base64
import binascii
import csv
import functools
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Response
from litestar.exceptions import ValidationException
from litestar.openapi.spec import OpenAPIHeader, OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import QueryParameter
from psycopg import sql

from app.api.database import ReadDatabase, Rows

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_CURSOR_CHARS = 512
NEXT_CURSOR_HEADER = "X-Next-Cursor"
CSV_MEDIA_TYPE = "text/csv"  # Litestar adds "; charset=utf-8"
KEY = "bucket_start_utc"
HEIGHT_KEY = "height"  # the key of per-block views

Interval = Literal["10m", "1h", "24h"]
Order = Literal["asc", "desc"]
Format = Literal["json", "csv"]


class Page(msgspec.Struct):
    """A list of rows; `next_cursor` fetches the next page (null on the last one)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class PageRequest:
    """The validated paging parameters of a time-series route (key bucket_start_utc: times; height: ints)."""

    start: datetime | int | None
    end: datetime | int | None
    limit: int
    order: Order
    format: Format
    cursor: Cursor | None = field(default=None)
    key: str = KEY


@dataclass(frozen=True)
class Cursor:
    """Where the previous page stopped: its listing, its order and its last key."""

    listing: str
    order: Order
    after: datetime | int  # a bucket_start_utc, or a height

    def encode(self) -> str:
        key = self.after if isinstance(self.after, int) else self.after.isoformat()
        raw = msgspec.json.encode({"s": self.listing, "o": self.order, "k": key})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        if len(text) > MAX_CURSOR_CHARS:
            raise ValidationException(detail="invalid cursor: too long (pass next_cursor back unchanged)")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = msgspec.json.decode(raw)
            listing, order, key = data["s"], data["o"], data["k"]
            is_height = isinstance(key, int) and not isinstance(key, bool)
            after = key if is_height else datetime.fromisoformat(key)
        except (binascii.Error, ValueError, TypeError, KeyError, msgspec.DecodeError) as exc:
            raise ValidationException(
                detail="invalid cursor: not one this API issued (pass next_cursor back unchanged)"
            ) from exc
        if not isinstance(listing, str) or order not in ("asc", "desc") or (not is_height and after.tzinfo is None):
            raise ValidationException(
                detail="invalid cursor: not one this API issued (pass next_cursor back unchanged)"
            )
        return cls(listing, order, after)


def as_utc(name: str, value: datetime | None) -> datetime | None:
    """A query time in UTC; a time without an offset is taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValidationException(detail=f"invalid {name}: {value.isoformat()} is out of range") from exc


LimitParameter = Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"Rows per page, 1..{MAX_LIMIT}.")]
CursorParameter = Annotated[
    str | None,
    QueryParameter(description="next_cursor (or the X-Next-Cursor header) of the previous page.", required=False),
]
OrderParameter = Annotated[
    Order, QueryParameter(description="asc (oldest first) or desc; a cursor continues in its own order.")
]
FormatParameter = Annotated[
    Format,
    QueryParameter(name="format", description="json ({items, next_cursor}) or csv (next cursor in X-Next-Cursor)."),
]


def provide_page_request(
    start: Annotated[
        datetime | None,
        QueryParameter(
            description="First bucket_start_utc to include (ISO 8601; Z or an offset; no offset = UTC).",
            required=False,
        ),
    ] = None,
    end: Annotated[
        datetime | None,
        QueryParameter(description="bucket_start_utc to stop before (exclusive; ISO 8601).", required=False),
    ] = None,
    limit: LimitParameter = DEFAULT_LIMIT,
    cursor: CursorParameter = None,
    order: OrderParameter = "asc",
    output_format: FormatParameter = "json",
) -> PageRequest:
    """Check the paging parameters together (each alone was checked against its declared type)."""
    start, end = as_utc("start", start), as_utc("end", end)
    if start is not None and end is not None and start >= end:
        raise ValidationException(detail=f"invalid start/end: start ({start.isoformat()}) must be before end")
    return PageRequest(start, end, limit, order, output_format, _cursor(cursor, order, KEY))


def provide_height_page_request(
    start_height: Annotated[
        int | None, QueryParameter(ge=0, description="First block height to include.", required=False)
    ] = None,
    end_height: Annotated[
        int | None, QueryParameter(ge=0, description="Block height to stop before (exclusive).", required=False)
    ] = None,
    limit: LimitParameter = DEFAULT_LIMIT,
    cursor: CursorParameter = None,
    order: OrderParameter = "asc",
    output_format: FormatParameter = "json",
) -> PageRequest:
    """The paging parameters of a per-block route: heights instead of times, the rest as every series."""
    if start_height is not None and end_height is not None and start_height >= end_height:
        raise ValidationException(
            detail=f"invalid start_height/end_height: start_height ({start_height}) must be below end_height"
        )
    return PageRequest(
        start_height, end_height, limit, order, output_format, _cursor(cursor, order, HEIGHT_KEY), HEIGHT_KEY
    )


def _cursor(text: str | None, order: Order, key: str) -> Cursor | None:
    """The decoded cursor, checked against the request's order and the kind of key the route pages by."""
    if text is None:
        return None
    position = Cursor.decode(text)
    if position.order != order:
        raise ValidationException(
            detail=f"invalid cursor: it continues an order={position.order} listing; pass order={position.order}"
        )
    if isinstance(position.after, int) != (key == HEIGHT_KEY):
        raise ValidationException(detail="invalid cursor: it continues another route (drop it to start over)")
    return position


def page_query(view: str, page: PageRequest, equals: dict[str, Any] | None = None) -> tuple[sql.Composed, dict]:
    """The one SELECT of a page of api.<view> (`view` must be a name the caller has vetted)."""
    params: dict[str, Any] = {"limit": page.limit + 1}
    filters: list[sql.Composable] = []
    for i, (column, value) in enumerate((equals or {}).items()):
        filters.append(sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(f"eq{i}")))
        params[f"eq{i}"] = value
    key = sql.Identifier(page.key)
    if page.start is not None:
        filters.append(sql.SQL("{} >= %(start)s").format(key))
        params["start"] = page.start
    if page.end is not None:
        filters.append(sql.SQL("{} < %(end)s").format(key))
        params["end"] = page.end
    if page.cursor is not None:
        filters.append(sql.SQL("{} > %(after)s" if page.order == "asc" else "{} < %(after)s").format(key))
        params["after"] = page.cursor.after
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(filters) if filters else sql.SQL("")
    query = sql.SQL("SELECT * FROM {view}{where} ORDER BY {key} {direction} LIMIT %(limit)s").format(
        view=sql.Identifier("api", view),
        where=where,
        key=key,
        direction=sql.SQL("ASC" if page.order == "asc" else "DESC"),
    )
    return query, params


async def read_page(
    reads: ReadDatabase, view: str, page: PageRequest, *, listing: str | None = None, equals: dict | None = None
) -> Response[Page]:
    """One page of api.<view> (a name the caller has vetted), rows optionally narrowed by `equals`; the
    cursor must come from the same listing (default: the view)."""
    listing = listing or view
    check_cursor_listing(page, listing)
    return page_response(await reads.fetch(*page_query(view, page, equals)), page, listing)


def check_cursor_listing(page: PageRequest, listing: str) -> None:
    """A cursor continues the listing that issued it, not another route's or venue's."""
    if page.cursor is not None and page.cursor.listing != listing:
        raise ValidationException(
            detail=f"invalid cursor: it continues {page.cursor.listing!r}, not {listing!r} (drop it to start over)"
        )


def page_response(result: Rows, page: PageRequest, listing: str) -> Response[Page]:
    """The page as JSON, or as CSV with the next cursor in X-Next-Cursor (absent on the last page)."""
    rows = result.rows
    next_cursor = None
    if len(rows) > page.limit:
        rows = rows[: page.limit]
        key = rows[-1][result.columns.index(page.key)]
        next_cursor = Cursor(listing, page.order, key).encode()
    if page.format == "csv":
        headers = {NEXT_CURSOR_HEADER: next_cursor} if next_cursor else {}
        return Response(csv_text(result.columns, rows), media_type=CSV_MEDIA_TYPE, headers=headers)
    row_type = row_struct(tuple(result.columns))
    return Response(Page(items=[row_type(*row) for row in rows], next_cursor=next_cursor))


@functools.lru_cache(maxsize=256)
def row_struct(columns: tuple[str, ...]) -> type[msgspec.Struct]:
    """A msgspec Struct with the view's columns as fields, in order: it encodes as the same JSON object as a
    dict of the row, at a tenth of the cost of building the dicts (one type per column list, cached)."""
    fields = [(f"c{i}", Any) for i in range(len(columns))]
    return msgspec.defstruct("Row", fields, rename={f"c{i}": name for i, name in enumerate(columns)})


def csv_cell(value: Any) -> Any:
    """The JSON spelling of a value, unquoted: exact decimals, ISO 8601 UTC, JSON for jsonb/arrays, '' for NULL."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return msgspec.json.encode(value).decode()
    if isinstance(value, int | str):
        return value
    return msgspec.to_builtins(value)


def csv_text(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return out.getvalue()


@dataclass
class TimeSeriesOperation(Operation):
    """OpenAPI operation of a time-series route: the 200 answer is also offered as CSV (format=csv)."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content["text/csv"] = OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.STRING, description="header row of the view's columns, then rows")
            )
            ok.headers = {
                NEXT_CURSOR_HEADER: OpenAPIHeader(
                    schema=Schema(type=OpenAPIType.STRING),
                    description="format=csv only: the cursor of the next page; absent on the last page",
                )
            }
