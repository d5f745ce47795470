"""Chain foundation: schemas, checkpoints, raw block and transaction facts, primitives, reorg log.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Frozen once released: change the schema through a new revision. Functions and views live in
sql/functions and are re-applied by env.py after every upgrade.
"""

from alembic import op
from app.migrations import execute_sql, timescaledb_available, timescaledb_installed

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMAS = """
CREATE SCHEMA IF NOT EXISTS raw;
COMMENT ON SCHEMA raw IS 'Facts as the loaders wrote them (blocks, transactions, venue candles).';
CREATE SCHEMA IF NOT EXISTS core;
COMMENT ON SCHEMA core IS 'Derived tables, checkpoints and the SQL functions that build them.';
CREATE SCHEMA IF NOT EXISTS api;
COMMENT ON SCHEMA api IS 'Read-only views for the REST API, Grafana and analysts.';
"""

TABLES = """
CREATE TABLE core.sync_checkpoints (
    chain text NOT NULL,
    component text NOT NULL,
    "interval" text NOT NULL,
    last_height bigint,
    last_bucket_time timestamptz,
    status text NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'error', 'running')),
    error_message text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, component, "interval")
);
COMMENT ON TABLE core.sync_checkpoints IS
    'Progress of every stage, keyed by (chain, component, interval); '
    'moves in the same transaction as the write it describes.';

CREATE TABLE raw.btc_blocks_raw (
    height bigint NOT NULL CHECK (height >= 0),
    block_hash text NOT NULL CHECK (length(block_hash) = 64),
    previous_block_hash text CHECK (length(previous_block_hash) = 64),
    block_time timestamptz NOT NULL,
    median_time timestamptz,
    tx_count integer NOT NULL CHECK (tx_count >= 1),
    size integer NOT NULL,
    stripped_size integer,
    weight integer,
    difficulty numeric NOT NULL,
    chainwork text NOT NULL,
    version bigint NOT NULL,
    merkle_root text NOT NULL,
    bits text NOT NULL,
    nonce bigint NOT NULL,
    PRIMARY KEY (height)
);
CREATE UNIQUE INDEX btc_blocks_raw_hash_idx ON raw.btc_blocks_raw (block_hash, height);
COMMENT ON TABLE raw.btc_blocks_raw IS 'One row per block on the best chain, as Bitcoin Core reported it.';

CREATE TABLE raw.btc_tx_raw (
    height bigint NOT NULL,
    event_time timestamptz NOT NULL,
    tx_index integer NOT NULL CHECK (tx_index >= 0),
    txid text NOT NULL,
    size integer NOT NULL,
    vsize integer,
    weight integer,
    is_coinbase boolean NOT NULL,
    is_segwit boolean NOT NULL,
    input_count integer NOT NULL,
    output_count integer NOT NULL,
    output_value_sat bigint NOT NULL CHECK (output_value_sat >= 0),
    fee_sat bigint CHECK (fee_sat >= 0),
    PRIMARY KEY (height, tx_index),
    CHECK (NOT (is_coinbase AND fee_sat IS NOT NULL))
);
COMMENT ON TABLE raw.btc_tx_raw IS
    'One row per transaction of the best chain: the facts exact medians and feerates are computed from.';

CREATE TABLE core.btc_primitive_block (
    height bigint NOT NULL,
    block_hash text NOT NULL,
    block_time timestamptz NOT NULL,
    median_time timestamptz,
    event_time timestamptz NOT NULL,
    bucket_start_utc timestamptz NOT NULL,
    tx_count integer NOT NULL,
    non_coinbase_tx_count integer NOT NULL,
    input_count bigint NOT NULL,
    output_count bigint NOT NULL,
    total_out_sat bigint NOT NULL,
    coinbase_out_sat bigint NOT NULL,
    fees_known boolean NOT NULL,
    total_fee_sat bigint NOT NULL,
    max_subsidy_sat bigint NOT NULL,
    subsidy_sat bigint NOT NULL,
    issued_sat bigint NOT NULL,
    miner_revenue_sat bigint NOT NULL,
    block_size_bytes integer NOT NULL,
    block_weight_wu integer NOT NULL,
    block_vsize_vb integer NOT NULL,
    tx_size_total_bytes bigint NOT NULL,
    tx_vsize_total_vb bigint NOT NULL,
    avg_fee_sat numeric,
    min_feerate_sat_vb numeric,
    max_feerate_sat_vb numeric,
    segwit_tx_count integer NOT NULL,
    sw_total_size_bytes bigint NOT NULL,
    sw_total_weight_wu bigint NOT NULL,
    difficulty numeric NOT NULL,
    chainwork text NOT NULL,
    cumulative_supply_sat bigint,
    PRIMARY KEY (height)
);
CREATE INDEX btc_primitive_block_bucket_idx ON core.btc_primitive_block (bucket_start_utc, height);

CREATE TABLE core.btc_primitive_10m (
    bucket_start_utc timestamptz NOT NULL,
    block_count integer NOT NULL,
    issued_sat_10m bigint NOT NULL,
    fees_sat_10m bigint NOT NULL,
    total_fee_sat_10m bigint NOT NULL,
    miner_revenue_sat_10m bigint NOT NULL,
    total_out_sat_10m bigint NOT NULL,
    transferred_sat_10m bigint NOT NULL,
    transferred_btc_10m numeric(24, 8) NOT NULL,
    tx_count_10m bigint NOT NULL,
    non_coinbase_tx_count_10m bigint NOT NULL,
    input_count_10m bigint NOT NULL,
    output_count_10m bigint NOT NULL,
    segwit_tx_count_10m bigint NOT NULL,
    block_size_total_bytes_10m bigint NOT NULL,
    block_weight_total_wu_10m bigint NOT NULL,
    block_vsize_total_vb_10m bigint NOT NULL,
    tx_size_total_bytes_10m bigint NOT NULL,
    tx_vsize_total_vb_10m bigint NOT NULL,
    sw_total_size_bytes_10m bigint NOT NULL,
    sw_total_weight_wu_10m bigint NOT NULL,
    utxo_increase_10m bigint NOT NULL,
    created_output_count_10m bigint NOT NULL,
    spent_output_count_10m bigint NOT NULL,
    tx_rate_per_sec_10m numeric NOT NULL,
    fee_observed_tx_count_10m bigint NOT NULL,
    fee_observed_sat_10m bigint NOT NULL,
    fee_observed_vsize_vb_10m bigint NOT NULL,
    block_interval_count_10m integer NOT NULL,
    block_interval_sum_sec_10m bigint NOT NULL,
    supply_total_sat bigint,
    difficulty_last numeric,
    chainwork_last text,
    best_block_height_last bigint,
    halving_epoch integer,
    block_interval_mean_sec_10m numeric,
    block_interval_median_sec_10m numeric,
    avg_fee_sat_10m numeric,
    median_fee_sat_10m numeric,
    avg_feerate_sat_vb_10m numeric,
    min_feerate_sat_vb_10m numeric,
    max_feerate_sat_vb_10m numeric,
    segwit_share_10m numeric,
    tx_size_mean_bytes_10m numeric,
    block_size_mean_bytes_10m numeric,
    block_weight_mean_wu_10m numeric,
    block_reward_sat_avg numeric,
    open_price_usd numeric,
    high_price_usd numeric,
    low_price_usd numeric,
    close_price_usd numeric,
    market_cap_usd numeric,
    PRIMARY KEY (bucket_start_utc)
);

CREATE TABLE core.mq_btc_price_10m (
    bucket_start_utc timestamptz NOT NULL,
    source_count integer NOT NULL DEFAULT 0 CHECK (source_count >= 0),
    source_names text[] NOT NULL DEFAULT '{}',
    composition_method text NOT NULL,
    open_price_usd numeric CHECK (open_price_usd > 0),
    high_price_usd numeric CHECK (high_price_usd > 0),
    low_price_usd numeric CHECK (low_price_usd > 0),
    close_price_usd numeric CHECK (close_price_usd > 0),
    volume_btc numeric,
    volume_usd numeric,
    PRIMARY KEY (bucket_start_utc)
);
COMMENT ON TABLE core.mq_btc_price_10m IS
    'Canonical BTC/USD price per 10m bucket, composed from the venue tables; '
    'NULL prices with source_count 0 where no venue traded.';

CREATE TABLE core.btc_reorg_events (
    reorg_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detected_at timestamptz NOT NULL DEFAULT now(),
    fork_height bigint NOT NULL,
    fork_block_hash text NOT NULL,
    fork_bucket_utc timestamptz,
    old_tip_height bigint NOT NULL,
    old_tip_hash text NOT NULL,
    new_tip_hash text,
    depth integer NOT NULL CHECK (depth >= 1),
    orphaned_block_hashes text[] NOT NULL,
    detected_by text NOT NULL
);
COMMENT ON TABLE core.btc_reorg_events IS
    'Every reorganisation MQNODE followed: the common ancestor (fork), the orphaned blocks and who noticed.';
"""

# TimescaleDB: block/tx facts partitioned by height, the 10m tables by bucket time; columnstore settings
# so old chunks compress (UPDATE/DELETE/ON CONFLICT still work on them since 2.11).
HYPERTABLES = """
SELECT create_hypertable('raw.btc_blocks_raw', by_range('height', 100000));
SELECT create_hypertable('raw.btc_tx_raw', by_range('height', 2000));
SELECT create_hypertable('core.btc_primitive_block', by_range('height', 100000));
SELECT create_hypertable('core.btc_primitive_10m', by_range('bucket_start_utc', INTERVAL '90 days'));
SELECT create_hypertable('core.mq_btc_price_10m', by_range('bucket_start_utc', INTERVAL '90 days'));

ALTER TABLE raw.btc_tx_raw SET (timescaledb.compress, timescaledb.compress_orderby = 'tx_index');
ALTER TABLE raw.btc_blocks_raw SET (timescaledb.compress, timescaledb.compress_orderby = 'height');
ALTER TABLE core.btc_primitive_block SET (timescaledb.compress, timescaledb.compress_orderby = 'height');
ALTER TABLE core.btc_primitive_10m SET (timescaledb.compress, timescaledb.compress_orderby = 'bucket_start_utc');
ALTER TABLE core.mq_btc_price_10m SET (timescaledb.compress, timescaledb.compress_orderby = 'bucket_start_utc');

-- Integer-partitioned tables need a "now" in heights for their compression policy: the best raw height.
CREATE OR REPLACE FUNCTION raw.btc_best_height() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT coalesce(max(height), 0) FROM raw.btc_blocks_raw $$;
SELECT set_integer_now_func('raw.btc_tx_raw', 'raw.btc_best_height');
SELECT set_integer_now_func('raw.btc_blocks_raw', 'raw.btc_best_height');
SELECT set_integer_now_func('core.btc_primitive_block', 'raw.btc_best_height');
-- Keep the reorg-prone tip (and a wide margin) uncompressed.
SELECT add_compression_policy('raw.btc_tx_raw', compress_after => 10000::bigint);
SELECT add_compression_policy('raw.btc_blocks_raw', compress_after => 200000::bigint);
SELECT add_compression_policy('core.btc_primitive_block', compress_after => 200000::bigint);
SELECT add_compression_policy('core.btc_primitive_10m', compress_after => INTERVAL '180 days');
SELECT add_compression_policy('core.mq_btc_price_10m', compress_after => INTERVAL '180 days');
"""

# Analysts' sessions find the public table names without schema prefixes.
SEARCH_PATH = """
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, raw, core, api', current_database());
END
$$;
"""


def upgrade() -> None:
    bind = op.get_bind()
    if timescaledb_available(bind):
        execute_sql(bind, "CREATE EXTENSION IF NOT EXISTS timescaledb")
    execute_sql(bind, SCHEMAS)
    execute_sql(bind, TABLES)
    if timescaledb_installed(bind):
        execute_sql(bind, HYPERTABLES)
    execute_sql(bind, SEARCH_PATH)


def downgrade() -> None:
    raise NotImplementedError("revision 0001 is the foundation; drop the database to start over")
