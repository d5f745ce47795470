"""The UTXO set columns in the 1h/24h rollups; per-day snapshots of the UTXO set by creation day.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

1. core.btc_primitive_1h and core.btc_primitive_24h are recreated from sql/aggregates/070_btc_primitive_1h_v3.sql
   and 080_btc_primitive_24h_v3.sql, exactly as revision 0010 recreated the v1 ones: revision 0010's columns and
   rules plus the backbone's UTXO set columns (revision 0008) at the end, utxo_count_total and
   utxo_set_size_total_bytes (the value at the period's end) and utxo_size_inc_bytes (the sum of the 10m
   increments). The rollups start empty with their checkpoints removed, so the rollups lane
   (core.refresh_rollup) materializes them again from the 10m backbone; metrics wait for them meanwhile.
2. core.btc_utxo_age_day: the UTXO set at the end of each UTC day split by creation day (one array per
   day), written by core.build_btc_utxo_age_days (sql/functions/085_coin_age_metrics.sql), which the
   daily supply_age_bands / holder_supply metrics call over their range: each day is the day before's
   snapshot plus that day's creations and spends, so their cost per day no longer grows with the whole
   history (docs/benchmarks.md). They start empty: the first run over a range without a snapshot before it
   computes its base from the facts once.
Frozen once released, with the two definition files.
"""

from alembic import op
from app.migrations import AGGREGATES_DIR, execute_sql, timescaledb_installed

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# (rollup, definition file, source relation, refresh policy on TimescaleDB: revision 0003's)
ROLLUPS = (
    ("btc_primitive_1h", "070_btc_primitive_1h_v3.sql", "core.btc_primitive_10m",
     "start_offset => INTERVAL '3 days', end_offset => NULL, schedule_interval => INTERVAL '10 minutes'"),
    ("btc_primitive_24h", "080_btc_primitive_24h_v3.sql", "core.btc_primitive_1h",
     "start_offset => INTERVAL '7 days', end_offset => NULL, schedule_interval => INTERVAL '1 hour'"),
)  # fmt: skip

# Views over the old rollups; sql/functions (080, 090) creates them again after the revisions.
DEPENDENT_VIEWS = """
DROP VIEW IF EXISTS api.btc_primitive_24h;
DROP VIEW IF EXISTS api.btc_primitive_1h;
DROP VIEW IF EXISTS core.btc_priced_periods;
DROP VIEW IF EXISTS core.btc_primitive_periods;
"""

AGE_SNAPSHOTS = """
CREATE TABLE core.btc_utxo_age_day (
    day date NOT NULL,
    state_height bigint,
    state_hash text,
    state_value_x_created_epoch numeric,
    known boolean NOT NULL,
    created_from_day date,
    unspent_sat bigint[],
    PRIMARY KEY (day)
);
COMMENT ON TABLE core.btc_utxo_age_day IS
    'Per UTC day: the UTXO set at its end by creation day (unspent_sat[i]: value created on created_from_day '
    '+ i - 1 still unspent; NULL when not known) and the block the day ends in (height, hash, UTXO value x '
    'creation time: what a snapshot is checked against before it is built on).';
"""


def definition(file_name: str) -> str:
    return (AGGREGATES_DIR / file_name).read_text().strip().rstrip(";")


def range_insert(rollup: str, source: str, sql: str) -> str:
    """The plain-PostgreSQL refresh of one range [$1, $2): the definition over the source rows of the range
    (the form core.rollup_registry.refresh_insert_sql holds; revision 0010's rule)."""
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
    execute_sql(bind, AGE_SNAPSHOTS)


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
