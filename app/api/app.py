"""The Litestar application (`mqnode serve`).

Reads go through the read-only role (app/api/database.py) and only ever touch views in schema api; the one
write route, the internal Binance 10m ingest, uses the main database URL.
"""

from __future__ import annotations

import psycopg
from litestar import Litestar
from litestar.exceptions import ValidationException
from litestar.openapi import OpenAPIConfig

from app.api.checkpoints import CheckpointController
from app.api.database import ReadDatabase
from app.api.errors import bad_request, database_error, database_unavailable
from app.api.health import HealthController
from app.api.internal_ingest import IngestConfig, ingest_binance_10m
from app.api.metrics import MetricController
from app.api.prices import PriceController
from app.api.primitive import PrimitiveController
from app.api.registry import RegistryController
from app.api.utxo import UtxoController

MAX_BODY_BYTES = 8 * 1024 * 1024

OPENAPI = OpenAPIConfig(
    title="MQNODE API",
    version="1",
    description=(
        "Read-only views of a self-owned Bitcoin data node (schema api), read as the role mqnode_reader. "
        "Time-series routes page by an opaque keyset cursor: {items, next_cursor}, next_cursor null on the "
        "last page; format=csv returns the same rows as CSV with the next cursor in X-Next-Cursor. "
        "Numeric values are exact decimal strings, integers are JSON integers, times ISO 8601 UTC."
    ),
)


def create_app(
    database_url: str,
    ingest_token: str | None,
    max_rows: int = 5000,
    *,
    read_database_url: str | None = None,
    read_pool_size: int = 4,
) -> Litestar:
    """The API: reads with `read_database_url` (a login role in mqnode_reader) or else `database_url`, in both
    cases as mqnode_reader and read-only; the internal ingest route writes with `database_url`."""
    reads = ReadDatabase(read_database_url or database_url, keep_idle=read_pool_size)
    app = Litestar(
        route_handlers=[
            HealthController,
            PrimitiveController,
            UtxoController,
            PriceController,
            MetricController,
            RegistryController,
            CheckpointController,
            ingest_binance_10m,
        ],
        exception_handlers={
            ValidationException: bad_request,
            psycopg.OperationalError: database_unavailable,
            psycopg.Error: database_error,
        },
        openapi_config=OPENAPI,
        request_max_body_size=MAX_BODY_BYTES,
        on_shutdown=[reads.close],
    )
    app.state.reads = reads
    app.state.ingest = IngestConfig(database_url, ingest_token, max_rows)
    return app
