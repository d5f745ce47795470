"""Metrics, 1h/24h rollups and the read path: metric registry and output tables, rollups from
sql/aggregates (continuous aggregates on TimescaleDB, tables on plain PostgreSQL), the read-only role.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Frozen once released. The rollup definitions it applies (sql/aggregates/0[1-4]0_*.sql) are frozen with
it: a changed rollup is a new file and a new revision.
"""

from alembic import op
from app.migrations import AGGREGATES_DIR, execute_sql, timescaledb_installed

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INTERVALS = ("10m", "1h", "24h")

# (metric table stem, columns after bucket_start_utc)
METRIC_TABLES = {
    "market_cap": """
        supply_total_sat bigint,
        close_price_usd numeric,
        market_cap_usd numeric""",
    "nvt": """
        market_cap_usd numeric,
        transferred_sat bigint NOT NULL,
        close_price_usd numeric,
        transferred_value_usd numeric,
        nvt_raw numeric""",
    "miner_revenue": """
        block_count integer NOT NULL,
        miner_revenue_sat bigint NOT NULL,
        subsidy_sat bigint NOT NULL,
        fees_sat bigint NOT NULL,
        fee_share_of_revenue numeric,
        close_price_usd numeric,
        miner_revenue_usd numeric,
        subsidy_usd numeric,
        fees_usd numeric""",
    "fee_metrics": """
        non_coinbase_tx_count bigint NOT NULL,
        total_fee_sat bigint NOT NULL,
        avg_fee_sat numeric,
        median_fee_sat numeric,
        fee_observed_tx_count bigint NOT NULL,
        avg_feerate_sat_vb numeric,
        median_feerate_sat_vb numeric,
        min_feerate_sat_vb numeric,
        max_feerate_sat_vb numeric,
        fee_share_of_revenue numeric,
        close_price_usd numeric,
        total_fee_usd numeric,
        avg_fee_usd numeric,
        median_fee_usd numeric""",
    "hash_rate": """
        block_count integer NOT NULL,
        period_sec integer NOT NULL,
        difficulty_mean numeric,
        hash_rate_hs numeric,
        hash_rate_ehs numeric""",
}

REGISTRY = """
CREATE TABLE core.metric_registry (
    metric_name text NOT NULL,
    chain text NOT NULL DEFAULT 'btc',
    factor text NOT NULL,
    "interval" text NOT NULL CHECK ("interval" IN ('10m', '1h', '24h')),
    sql_function text NOT NULL,
    output_table text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    version integer NOT NULL DEFAULT 1,
    dependencies text[] NOT NULL DEFAULT '{}',
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (metric_name, "interval"),
    UNIQUE (output_table)
);
COMMENT ON TABLE core.metric_registry IS
    'Derived metrics: the SQL function that computes each (metric, interval), the table it writes, and the '
    'checkpoints (component:interval) it may not run past.';

CREATE TABLE core.rollup_registry (
    rollup_name text PRIMARY KEY,
    "interval" text NOT NULL,
    bucket_width interval NOT NULL,
    source_relation text NOT NULL,
    source_checkpoint text NOT NULL,
    refresh_order integer NOT NULL UNIQUE,
    materialization text NOT NULL CHECK (materialization IN ('continuous_aggregate', 'table')),
    definition_file text NOT NULL,
    refresh_insert_sql text
);
COMMENT ON TABLE core.rollup_registry IS
    '1h/24h rollups of the 10m tables: how each is materialized and refreshed (core.refresh_rollup).';
"""

METRIC_TABLE = """
CREATE TABLE core.btc_{stem}_{interval} (
    bucket_start_utc timestamptz NOT NULL,{columns},
    PRIMARY KEY (bucket_start_utc)
);
"""

METRIC_HYPERTABLE = """
SELECT create_hypertable('core.btc_{stem}_{interval}', by_range('bucket_start_utc', INTERVAL '{chunk}'));
"""

CHUNKS = {"10m": "90 days", "1h": "1 year", "24h": "10 years"}

# Plain PostgreSQL twin of TimescaleDB's time_bucket(interval, timestamptz): same origin (2000-01-03).
TIME_BUCKET_TWIN = """
CREATE FUNCTION public.time_bucket(bucket_width interval, ts timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT date_bin(bucket_width, ts, TIMESTAMPTZ '2000-01-03 00:00:00+00') $$;
COMMENT ON FUNCTION public.time_bucket(interval, timestamptz) IS
    'date_bin twin of TimescaleDB time_bucket (origin 2000-01-03) so rollup definitions run on plain PostgreSQL.';
"""

# (rollup, interval, width, definition file, source relation, source checkpoint)
ROLLUPS = (
    ("btc_primitive_1h", "1h", "1 hour", "010_btc_primitive_1h.sql", "core.btc_primitive_10m",
     "btc_primitive_10m_builder:10m"),
    ("btc_primitive_24h", "24h", "1 day", "020_btc_primitive_24h.sql", "core.btc_primitive_1h",
     "rollup_btc_primitive_1h:1h"),
    ("mq_btc_price_1h", "1h", "1 hour", "030_mq_btc_price_1h.sql", "core.mq_btc_price_10m",
     "btc_price_canonical_composer:10m"),
    ("mq_btc_price_24h", "24h", "1 day", "040_mq_btc_price_24h.sql", "core.mq_btc_price_1h",
     "rollup_mq_btc_price_1h:1h"),
)  # fmt: skip

# Production refresh by TimescaleDB's scheduler (mqnode also refreshes after each build).
CAGG_POLICY = {
    "1h": "start_offset => INTERVAL '3 days', end_offset => NULL, schedule_interval => INTERVAL '10 minutes'",
    "24h": "start_offset => INTERVAL '7 days', end_offset => NULL, schedule_interval => INTERVAL '1 hour'",
}

READER_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mqnode_reader') THEN
        CREATE ROLE mqnode_reader NOLOGIN;
    END IF;
    -- The owner may SET ROLE mqnode_reader (the API does when it has no login of its own).
    IF NOT pg_has_role(current_user, 'mqnode_reader', 'MEMBER') THEN
        EXECUTE format('GRANT mqnode_reader TO %I', current_user);
    END IF;
END
$$;
-- Every session sees timestamps in UTC unless it asks otherwise (the data contract's time zone).
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET timezone = ''UTC''', current_database());
END
$$;
COMMENT ON ROLE mqnode_reader IS 'Read-only: SELECT on the api schema views, nothing else (API, Grafana, analysts).';
"""


def definition(file_name: str) -> str:
    text = (AGGREGATES_DIR / file_name).read_text().strip()
    return text.rstrip(";")


def range_insert(rollup: str, source: str, sql: str) -> str:
    """The plain-PostgreSQL refresh of one range: the definition over the source rows of [$1, $2)."""
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
    execute_sql(bind, REGISTRY)
    for stem, columns in METRIC_TABLES.items():
        for interval in INTERVALS:
            execute_sql(bind, METRIC_TABLE.format(stem=stem, interval=interval, columns=columns))
            if timescale:
                execute_sql(bind, METRIC_HYPERTABLE.format(stem=stem, interval=interval, chunk=CHUNKS[interval]))
    if not timescale:
        execute_sql(bind, TIME_BUCKET_TWIN)
    for order, (rollup, interval, width, file_name, source, source_checkpoint) in enumerate(ROLLUPS, start=1):
        sql = definition(file_name)
        if timescale:
            execute_sql(
                bind,
                f"CREATE MATERIALIZED VIEW core.{rollup}\n"
                "WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS\n"
                f"{sql}\nWITH NO DATA;\n"
                f"SELECT add_continuous_aggregate_policy('core.{rollup}', {CAGG_POLICY[interval]});",
            )
            insert_sql, materialization = None, "continuous_aggregate"
        else:
            execute_sql(
                bind,
                f"CREATE TABLE core.{rollup} AS\n{sql}\nWITH NO DATA;\n"
                f"ALTER TABLE core.{rollup} ADD PRIMARY KEY (bucket_start_utc);",
            )
            insert_sql, materialization = range_insert(rollup, source, sql), "table"
        bind.connection.driver_connection.execute(
            'INSERT INTO core.rollup_registry (rollup_name, "interval", bucket_width, source_relation,'
            " source_checkpoint, refresh_order, materialization, definition_file, refresh_insert_sql)"
            " VALUES (%s, %s, %s::interval, %s, %s, %s, %s, %s, %s)",
            (rollup, interval, width, source, source_checkpoint, order, materialization, file_name, insert_sql),
        )
    execute_sql(bind, READER_ROLE)


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
