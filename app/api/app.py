"""The Litestar application (`mqnode serve`)."""

from __future__ import annotations

from litestar import Litestar, get

from app.api.internal_ingest import IngestConfig, ingest_binance_10m

MAX_BODY_BYTES = 8 * 1024 * 1024


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app(database_url: str, ingest_token: str | None, max_rows: int = 5000) -> Litestar:
    app = Litestar(route_handlers=[health, ingest_binance_10m], request_max_body_size=MAX_BODY_BYTES)
    app.state.ingest = IngestConfig(database_url, ingest_token, max_rows)
    return app
