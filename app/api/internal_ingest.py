"""POST /api/v1/internal/price/source/binance/10m: the cloud Binance collector pushes its 10m buckets (their
child candles and quality metadata; another feeder may push finished rows with their OHLCV).

Bearer token compared in constant time with MQNODE_INTERNAL_INGEST_TOKEN; without a configured token the
route refuses everything. The whole payload is validated before anything is written (row count bound,
decoding, 10-minute alignment and quality fields here; the OHLCV rule core.candle_problem in SQL); a bad
row gets a 4xx naming the row and the field. The rows go through core.write_venue_price_10m, the writer
of REST-built rows too (precedence, composer rewind, NOTIFY), in one transaction; the local Binance source
checkpoint is not touched (the cloud feeder owns its own), so replays are idempotent.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any

import psycopg
from litestar import Request, post
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.params import RawBody

from app.market.pushed_rows import PushedRowError, upsert_rows, validate_row


@dataclass(frozen=True)
class IngestConfig:
    """What the route needs from the settings."""

    database_url: str
    token: str | None
    max_rows: int = 5000


def check_token(request: Request, token: str | None) -> None:
    if not token:
        raise HTTPException(
            status_code=503, detail="internal ingest is disabled: MQNODE_INTERNAL_INGEST_TOKEN is not set"
        )
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise NotAuthorizedException(detail="missing bearer token")
    if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        raise PermissionDeniedException(detail="wrong token")


@post("/api/v1/internal/price/source/binance/10m", status_code=200, sync_to_thread=True)
def ingest_binance_10m(request: Request, body: RawBody) -> dict[str, Any]:
    config: IngestConfig = request.app.state.ingest
    check_token(request, config.token)
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise HTTPException(status_code=400, detail='body must be {"rows": [...]}')
    rows = payload["rows"]
    if not rows:
        raise HTTPException(status_code=400, detail="rows is empty")
    if len(rows) > config.max_rows:
        raise HTTPException(status_code=413, detail=f"{len(rows)} rows; at most {config.max_rows} per request")
    try:
        values = [validate_row(row, i) for i, row in enumerate(rows)]
        with psycopg.connect(config.database_url) as conn:
            upsert_rows(conn, values)
    except PushedRowError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from exc
    return {"accepted": len(values), "table": "binance_price_10m"}
