"""The primitive rollups hold chain facts only: one close per interval (the price rollups').

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

core.btc_primitive_1h and core.btc_primitive_24h are recreated from sql/aggregates/050_btc_primitive_1h_v2.sql
and 060_btc_primitive_24h_v2.sql: the columns and rules of revision 0003's definitions without
open/high/low/close_price_usd and market_cap_usd. Those came from rolling up the 10m backbone's copy of the
canonical price, a second close beside core.mq_btc_price_1h/_24h; api.btc_primitive_1h/_24h now join the
price rollups and compute market_cap_usd with core.market_cap_usd (sql/functions/090_api_views.sql).
The rollups start empty with their checkpoints removed, so the rollups lane (core.refresh_rollup)
materializes them again from the 10m backbone; metrics wait for them meanwhile. Frozen once released, with
the two definition files.
"""

from alembic import op
from app.migrations import AGGREGATES_DIR, execute_sql, timescaledb_installed

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# (rollup, definition file, source relation, refresh policy on TimescaleDB: revision 0003's)
ROLLUPS = (
    ("btc_primitive_1h", "050_btc_primitive_1h_v2.sql", "core.btc_primitive_10m",
     "start_offset => INTERVAL '3 days', end_offset => NULL, schedule_interval => INTERVAL '10 minutes'"),
    ("btc_primitive_24h", "060_btc_primitive_24h_v2.sql", "core.btc_primitive_1h",
     "start_offset => INTERVAL '7 days', end_offset => NULL, schedule_interval => INTERVAL '1 hour'"),
)  # fmt: skip

# Views over the old rollups; sql/functions (080, 090) creates them again after the revisions.
DEPENDENT_VIEWS = """
DROP VIEW IF EXISTS api.btc_primitive_24h;
DROP VIEW IF EXISTS api.btc_primitive_1h;
DROP VIEW IF EXISTS core.btc_priced_periods;
DROP VIEW IF EXISTS core.btc_primitive_periods;
"""


def definition(file_name: str) -> str:
    return (AGGREGATES_DIR / file_name).read_text().strip().rstrip(";")


def range_insert(rollup: str, source: str, sql: str) -> str:
    """The plain-PostgreSQL refresh of one range [$1, $2): the definition over the source rows of the range
    (the form revision 0003 stores in core.rollup_registry.refresh_insert_sql)."""
    marker = f"FROM {source} AS "
    if sql.count(marker) != 1:
        raise RuntimeError(f"rollup {rollup}: definition must read {source} exactly once as 'FROM {source} AS x'")
    ranged = sql.replace(
        marker, f"FROM (SELECT * FROM {source} WHERE bucket_start_utc >= $1 AND bucket_start_utc < $2) AS "
    )
    return f"INSERT INTO core.{rollup}\n{ranged}"


def upgrade() -> None:
    bind = op.get_bind()
    timescale = timescaledb_installed(bind)
    execute_sql(bind, DEPENDENT_VIEWS)
    kind = "MATERIALIZED VIEW" if timescale else "TABLE"
    execute_sql(bind, f"DROP {kind} core.btc_primitive_24h; DROP {kind} core.btc_primitive_1h;")
    for rollup, file_name, source, policy in ROLLUPS:
        sql = definition(file_name)
        if timescale:
            execute_sql(
                bind,
                f"CREATE MATERIALIZED VIEW core.{rollup}\n"
                "WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS\n"
                f"{sql}\nWITH NO DATA;\n"
                f"SELECT add_continuous_aggregate_policy('core.{rollup}', {policy});",
            )
            insert_sql = None
        else:
            execute_sql(
                bind,
                f"CREATE TABLE core.{rollup} AS\n{sql}\nWITH NO DATA;\n"
                f"ALTER TABLE core.{rollup} ADD PRIMARY KEY (bucket_start_utc);",
            )
            insert_sql = range_insert(rollup, source, sql)
        bind.connection.driver_connection.execute(
            "UPDATE core.rollup_registry SET definition_file = %s, refresh_insert_sql = %s WHERE rollup_name = %s",
            (file_name, insert_sql, rollup),
        )
    execute_sql(
        bind,
        "DELETE FROM core.sync_checkpoints WHERE chain = 'btc'"
        " AND component IN ('rollup_btc_primitive_1h', 'rollup_btc_primitive_24h');",
    )


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
