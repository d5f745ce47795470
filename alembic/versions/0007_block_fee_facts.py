"""Per-block fee facts: the per-transaction fee work done once per block, at ingest.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

- core.btc_block_fee_facts: one row per stored block, written by core.build_primitive_block in the
  loader's batch transaction: the block's fee observations (non-coinbase transactions with a known fee)
  as sorted arrays (fees in sat; MQNODE feerates fee / vsize in units of 10^-8 sat/vB; Bitcoin Core's
  integer feerates trunc(4 fee / weight) with the weight paid at each), their sums, and the statistics of
  the block computed from them by core.btc_fee_stats. Later stages combine these rows for any set of
  blocks (10m bucket, hour, day) without reading raw.btc_tx_raw again, exact medians kept.
- core.btc_primitive_10m gains median_feerate_sat_vb_10m and the fee / feerate percentiles p10, p25,
  p75, p90; core.btc_fee_metrics_{10m,1h,24h} gain the same percentiles.
Existing blocks get their fee facts here (once, from raw.btc_tx_raw). Frozen once released.
"""

from alembic import op
from app.migrations import SQL_FUNCTIONS_DIR, execute_sql, timescaledb_installed

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FEE_FACTS = """
CREATE TABLE core.btc_block_fee_facts (
    height bigint NOT NULL,
    fee_tx_count integer NOT NULL,
    fee_total_sat bigint NOT NULL,
    fee_vsize_total_vb bigint NOT NULL,
    fee_weight_total_wu bigint NOT NULL,
    fees_sorted_sat bigint[] NOT NULL,
    feerates_sorted_e8 bigint[] NOT NULL,
    core_feerates_sat_vb bigint[] NOT NULL,
    core_feerate_weights_wu bigint[] NOT NULL,
    median_fee_sat numeric,
    fee_p10_sat bigint,
    fee_p25_sat bigint,
    fee_p75_sat bigint,
    fee_p90_sat bigint,
    median_feerate_sat_vb numeric,
    min_feerate_sat_vb numeric,
    max_feerate_sat_vb numeric,
    feerate_p10_sat_vb bigint,
    feerate_p25_sat_vb bigint,
    feerate_p50_sat_vb bigint,
    feerate_p75_sat_vb bigint,
    feerate_p90_sat_vb bigint,
    PRIMARY KEY (height),
    CHECK (cardinality(fees_sorted_sat) = fee_tx_count),
    CHECK (cardinality(core_feerates_sat_vb) = cardinality(core_feerate_weights_wu))
);
COMMENT ON TABLE core.btc_block_fee_facts IS
    'Per-block fee observations as sorted arrays and their statistics (docs/data-contract.md): what every '
    '10m/1h/24h fee median and percentile is computed from, without reading transactions again.';
"""

HYPERTABLE = """
SELECT create_hypertable('core.btc_block_fee_facts', by_range('height', 10000));
ALTER TABLE core.btc_block_fee_facts SET (timescaledb.compress, timescaledb.compress_orderby = 'height');
SELECT set_integer_now_func('core.btc_block_fee_facts', 'raw.btc_best_height');
SELECT add_compression_policy('core.btc_block_fee_facts', compress_after => 10000::bigint);
"""

PERCENTILES = """
ALTER TABLE core.btc_primitive_10m
    ADD COLUMN median_feerate_sat_vb_10m numeric,
    ADD COLUMN fee_p10_sat_10m bigint,
    ADD COLUMN fee_p25_sat_10m bigint,
    ADD COLUMN fee_p75_sat_10m bigint,
    ADD COLUMN fee_p90_sat_10m bigint,
    ADD COLUMN feerate_p10_sat_vb_10m bigint,
    ADD COLUMN feerate_p25_sat_vb_10m bigint,
    ADD COLUMN feerate_p75_sat_vb_10m bigint,
    ADD COLUMN feerate_p90_sat_vb_10m bigint;
"""

METRIC_PERCENTILES = """
ALTER TABLE core.btc_fee_metrics_{interval}
    ADD COLUMN fee_p10_sat bigint,
    ADD COLUMN fee_p25_sat bigint,
    ADD COLUMN fee_p75_sat bigint,
    ADD COLUMN fee_p90_sat bigint,
    ADD COLUMN feerate_p10_sat_vb bigint,
    ADD COLUMN feerate_p25_sat_vb bigint,
    ADD COLUMN feerate_p75_sat_vb bigint,
    ADD COLUMN feerate_p90_sat_vb bigint;
"""

# Blocks stored before this revision: their fee facts from their transactions (once), and the 10m builder
# rewound to the first of them so every bucket gets its new columns (it then rewinds rollups and metrics).
BACKFILL = """
DO $$
DECLARE
    v_from bigint;
    v_to bigint;
BEGIN
    SELECT min(b.height), max(b.height) INTO v_from, v_to FROM raw.btc_blocks_raw AS b;
    IF v_from IS NOT NULL THEN
        PERFORM core.build_block_fee_facts(v_from, v_to);
        PERFORM core.mark_primitive_10m_dirty(v_from);
    END IF;
END
$$;
"""


def upgrade() -> None:
    bind = op.get_bind()
    execute_sql(bind, FEE_FACTS)
    if timescaledb_installed(bind):
        execute_sql(bind, HYPERTABLE)
    execute_sql(bind, PERCENTILES)
    for interval in ("10m", "1h", "24h"):
        execute_sql(bind, METRIC_PERCENTILES.format(interval=interval))
    # The function must exist first (sql/functions is re-applied after the revisions too).
    execute_sql(bind, (SQL_FUNCTIONS_DIR / "020_btc_primitive_block.sql").read_text())
    execute_sql(bind, BACKFILL)


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
