"""Coin-age facts: what each spent output was (value, creation height, script size), per block, compact.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

The loader asks getblock verbosity 3 (prevouts) and writes (docs/data-contract.md "UTXO and coin-age facts"):
- raw.btc_tx_raw gains utxo_output_count, utxo_output_value_sat, utxo_output_script_bytes: the transaction's
  outputs that enter the UTXO set (not OP_RETURN, not scripts over 10,000 bytes), their value and script bytes;
- raw.btc_prevout_stage (UNLOGGED, transient): one row per non-coinbase input with its prevout, COPYed in the
  batch and aggregated then deleted by core.finish_block_batch (core.build_block_utxo_facts).
What SQL keeps:
- core.btc_block_utxo_facts: per block, outputs created / spent (count, value, bogosize), getblockstats-style
  utxo_increase and utxo_size_inc, coin-seconds destroyed, and the UTXO set state carried after the block;
- core.btc_block_spent_by_day: per spending block x UTC day of the spent outputs' creation: count, value,
  value x creation time, and the part younger than one hour;
- core.btc_utxo_seed: the UTXO set state of a node synced from a height above 0 (gettxoutsetinfo);
- core.btc_primitive_10m gains utxo_count_total, utxo_size_inc_bytes_10m, utxo_set_size_total_bytes;
- the coin-age metric tables (sql/functions/085_coin_age_metrics.sql writes them).
Blocks stored before this revision have no prevouts: their facts say so (prevouts_known false, NULL state)
until they are re-ingested (`mqnode btc backfill --mode full`). Frozen once released.
"""

from alembic import op
from app.migrations import execute_sql, timescaledb_installed

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = """
ALTER TABLE raw.btc_tx_raw
    ADD COLUMN utxo_output_count integer,
    ADD COLUMN utxo_output_value_sat bigint,
    ADD COLUMN utxo_output_script_bytes bigint;

CREATE UNLOGGED TABLE raw.btc_prevout_stage (
    spend_height bigint NOT NULL,
    created_height bigint NOT NULL,
    value_sat bigint NOT NULL CHECK (value_sat >= 0),
    script_bytes integer NOT NULL CHECK (script_bytes >= 0),
    is_coinbase boolean NOT NULL
);
CREATE INDEX btc_prevout_stage_spend_idx ON raw.btc_prevout_stage (spend_height);
COMMENT ON TABLE raw.btc_prevout_stage IS
    'Transient: the prevouts of one loader batch (one row per non-coinbase input), aggregated into '
    'core.btc_block_utxo_facts / core.btc_block_spent_by_day and deleted in the same transaction.';

CREATE TABLE core.btc_block_utxo_facts (
    height bigint NOT NULL,
    created_utxo_count bigint,
    created_utxo_value_sat bigint,
    created_utxo_bogo_bytes bigint,
    input_count bigint NOT NULL,
    prevouts_known boolean NOT NULL,
    spent_count bigint,
    spent_value_sat bigint,
    spent_bogo_bytes bigint,
    spent_coinbase_count bigint,
    spent_undated_count bigint,
    utxo_increase bigint,
    utxo_size_inc_bytes bigint,
    cdd_sat_sec numeric,
    utxo_count_total bigint,
    utxo_value_total_sat bigint,
    utxo_bogo_total_bytes bigint,
    utxo_value_x_created_epoch numeric,
    cdd_cumulative_sat_sec numeric,
    PRIMARY KEY (height)
);
COMMENT ON TABLE core.btc_block_utxo_facts IS
    'Per block: outputs entering / leaving the UTXO set, coin-seconds destroyed, and the UTXO set state '
    'after the block (NULL where prevouts or the state below are unknown).';

CREATE TABLE core.btc_block_spent_by_day (
    spend_height bigint NOT NULL,
    created_day date NOT NULL,
    output_count bigint NOT NULL,
    value_sat bigint NOT NULL,
    value_x_created_epoch numeric NOT NULL,
    young_count bigint NOT NULL,
    young_value_sat bigint NOT NULL,
    PRIMARY KEY (spend_height, created_day)
);
COMMENT ON TABLE core.btc_block_spent_by_day IS
    'Outputs spent by each block, grouped by the UTC day their creation block belongs to (median time past); '
    'young_* = the part spent less than one hour after its creation.';

CREATE TABLE core.btc_utxo_seed (
    height bigint NOT NULL,
    block_hash text NOT NULL,
    utxo_count bigint NOT NULL,
    utxo_value_sat bigint NOT NULL,
    utxo_bogo_bytes bigint NOT NULL,
    supply_sat bigint,
    source text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (height)
);
COMMENT ON TABLE core.btc_utxo_seed IS
    'UTXO set state after block <height> from the node (gettxoutsetinfo) for a chain stored from a height '
    'above 1: the base of the carried supply and UTXO columns.';

ALTER TABLE core.btc_primitive_10m
    ADD COLUMN utxo_count_total bigint,
    ADD COLUMN utxo_size_inc_bytes_10m bigint,
    ADD COLUMN utxo_set_size_total_bytes bigint;
"""

HYPERTABLES = """
SELECT create_hypertable('core.btc_block_utxo_facts', by_range('height', 100000));
ALTER TABLE core.btc_block_utxo_facts SET (timescaledb.compress, timescaledb.compress_orderby = 'height');
SELECT set_integer_now_func('core.btc_block_utxo_facts', 'raw.btc_best_height');
SELECT add_compression_policy('core.btc_block_utxo_facts', compress_after => 200000::bigint);

SELECT create_hypertable('core.btc_block_spent_by_day', by_range('spend_height', 10000));
ALTER TABLE core.btc_block_spent_by_day SET (
    timescaledb.compress, timescaledb.compress_orderby = 'spend_height, created_day'
);
SELECT set_integer_now_func('core.btc_block_spent_by_day', 'raw.btc_best_height');
SELECT add_compression_policy('core.btc_block_spent_by_day', compress_after => 10000::bigint);
"""

# (metric table stem, intervals, columns after bucket_start_utc)
METRIC_TABLES = {
    "realized_cap": (
        ("10m", "1h", "24h"),
        """
        utxo_value_sat bigint,
        unpriced_utxo_sat bigint,
        realized_value_priced_usd numeric,
        realized_cap_usd numeric,
        realized_price_usd numeric,
        close_price_usd numeric,
        market_cap_usd numeric,
        mvrv numeric,
        nupl numeric""",
    ),
    "sopr": (
        ("10m", "1h", "24h"),
        """
        spent_output_count bigint,
        spent_value_sat bigint,
        spent_value_usd numeric,
        spent_realized_value_usd numeric,
        sopr numeric,
        adj_spent_value_sat bigint,
        adj_spent_value_usd numeric,
        adj_spent_realized_value_usd numeric,
        asopr numeric,
        realized_profit_usd numeric,
        realized_loss_usd numeric,
        net_realized_pnl_usd numeric""",
    ),
    "coin_days": (
        ("10m", "1h", "24h"),
        """
        spent_value_sat bigint,
        cdd numeric,
        dormancy numeric,
        cdd_cumulative numeric,
        utxo_value_sat bigint,
        utxo_coin_days numeric,
        liveliness numeric""",
    ),
    "supply_age_bands": (
        ("24h",),
        """
        utxo_value_sat bigint,
        supply_lt_1d_sat bigint,
        supply_1d_1w_sat bigint,
        supply_1w_1m_sat bigint,
        supply_1m_3m_sat bigint,
        supply_3m_6m_sat bigint,
        supply_6m_12m_sat bigint,
        supply_1y_2y_sat bigint,
        supply_2y_3y_sat bigint,
        supply_3y_5y_sat bigint,
        supply_5y_7y_sat bigint,
        supply_7y_10y_sat bigint,
        supply_gt_10y_sat bigint""",
    ),
    "holder_supply": (
        ("24h",),
        """
        utxo_value_sat bigint,
        sth_supply_sat bigint,
        lth_supply_sat bigint,
        close_price_usd numeric,
        sth_realized_cap_usd numeric,
        lth_realized_cap_usd numeric,
        supply_in_profit_sat bigint,
        supply_in_loss_sat bigint""",
    ),
}

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

# Blocks stored before this revision: their facts (no prevouts: state unknown), so every join finds a row.
BACKFILL = """
DO $$
DECLARE
    v_from bigint;
    v_to bigint;
BEGIN
    SELECT min(b.height), max(b.height) INTO v_from, v_to FROM raw.btc_blocks_raw AS b;
    IF v_from IS NOT NULL THEN
        PERFORM core.build_block_utxo_facts(v_from, v_to);
        PERFORM core.mark_primitive_10m_dirty(v_from);
    END IF;
END
$$;
"""


def upgrade() -> None:
    from app.migrations import SQL_FUNCTIONS_DIR

    bind = op.get_bind()
    execute_sql(bind, TABLES)
    timescale = timescaledb_installed(bind)
    if timescale:
        execute_sql(bind, HYPERTABLES)
    for stem, (intervals, columns) in METRIC_TABLES.items():
        for interval in intervals:
            execute_sql(bind, METRIC_TABLE.format(stem=stem, interval=interval, columns=columns))
            if timescale:
                execute_sql(bind, METRIC_HYPERTABLE.format(stem=stem, interval=interval, chunk=CHUNKS[interval]))
    # The function must exist first (sql/functions is re-applied after the revisions too).
    execute_sql(bind, (SQL_FUNCTIONS_DIR / "025_btc_utxo_facts.sql").read_text())
    execute_sql(bind, BACKFILL)


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
