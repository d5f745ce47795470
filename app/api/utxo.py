"""GET /api/v1/btc/utxo/blocks (api.btc_block_utxo_facts, one row per stored block, paged by height) and
GET /api/v1/btc/utxo/coverage (the api.btc_coin_age_coverage row: from which height the supply, the UTXO set
columns and the coin-age metrics are complete)."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ServiceUnavailableException
from psycopg import sql

from app.api.pages import Page, PageRequest, TimeSeriesOperation, provide_height_page_request, read_page


class CoinAgeCoverage(msgspec.Struct):
    """api.btc_coin_age_coverage (docs/data-contract.md "Coverage"): heights, null where not known or not
    applicable (state_complete_*: null on a chain stored from above genesis, whose coins' ages are unknown)."""

    first_stored_height: int | None
    tip_height: int | None
    utxo_seed_height: int | None
    supply_seed_sat: int | None
    supply_from_height: int | None
    utxo_set_from_height: int | None
    state_complete_from_height: int | None
    state_complete_through_height: int | None
    flows_complete_from_height: int | None
    undated_flow_block_count: int


COVERAGE_QUERY = sql.SQL("SELECT {columns} FROM api.btc_coin_age_coverage").format(
    columns=sql.SQL(", ").join(sql.Identifier(name) for name in CoinAgeCoverage.__struct_fields__)
)


class UtxoController(Controller):
    path = "/api/v1/btc/utxo"
    tags = ["on-chain"]

    @get(
        "/blocks",
        operation_class=TimeSeriesOperation,
        raises=[ServiceUnavailableException],
        dependencies={"page": Provide(provide_height_page_request, sync_to_thread=False)},
    )
    async def list_block_utxo_facts(self, state: State, page: NamedDependency[PageRequest]) -> Response[Page]:
        """Rows of api.btc_block_utxo_facts keyed by height: outputs created and spent, their bogosize, coin
        seconds destroyed, and the UTXO set after the block (NULL where unknown, never 0)."""
        return await read_page(state.reads, "btc_block_utxo_facts", page)

    @get("/coverage", raises=[ServiceUnavailableException])
    async def coin_age_coverage(self, state: State) -> CoinAgeCoverage:
        """The api.btc_coin_age_coverage row: the stored heights, the node's UTXO seed below a chain stored from
        above genesis, and the heights from which supply, UTXO set and coin-age state and flows are complete."""
        result = await state.reads.fetch(COVERAGE_QUERY)
        if not result.rows:
            raise ServiceUnavailableException(detail="api.btc_coin_age_coverage returned no row")
        return CoinAgeCoverage(**result.dicts()[0])
