"""GET /api/v1/checkpoints: every stage's progress (api.checkpoints)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.datastructures import State
from litestar.exceptions import ServiceUnavailableException

from app.api.pages import Page

CHECKPOINTS_QUERY = 'SELECT * FROM api.checkpoints ORDER BY chain, component, "interval"'


class CheckpointController(Controller):
    path = "/api/v1/checkpoints"
    tags = ["health"]

    @get(raises=[ServiceUnavailableException])
    async def list_checkpoints(self, state: State) -> Page:
        """(chain, component, interval) -> last height / bucket, status, error message, updated_at."""
        return Page(items=(await state.reads.fetch(CHECKPOINTS_QUERY)).dicts(), next_cursor=None)
