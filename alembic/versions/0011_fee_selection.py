"""Fee statistics of several blocks by order-statistic selection over their sorted arrays (no merge).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

- type core.btc_fee_arrays: one block's four sorted arrays, held in memory by core.btc_fee_stats_of_blocks
  (sql/functions/021_btc_fee_selection.sql) while it searches them;
- core.btc_block_fee_facts.core_feerate_cum_weights_wu: the running sums of core_feerate_weights_wu
  (generated from it, so core.build_block_fee_facts writes it without naming it): the Core weight paid at
  feerates <= each feerate, which the weighted percentiles of a set of blocks are searched in;
- the two long arrays (fees_sorted_sat, feerates_sorted_e8) are TOAST-compressed with lz4 where the server
  has it (decompressing pglz was most of the time of reading a block's arrays).
On TimescaleDB a column with an expression cannot be added while the table has compression on: its chunks
are decompressed (one row per block), compression turned off and on again around the change with 0007's
settings and policy (which compresses them again).
Frozen once released.
"""

from alembic import op
from app.migrations import SQL_FUNCTIONS_DIR, execute_sql, timescaledb_installed

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TYPE = """
CREATE TYPE core.btc_fee_arrays AS (
    fees_sat bigint[],
    feerates_e8 bigint[],
    core_feerates_sat_vb bigint[],
    core_cum_weights_wu bigint[]
);
COMMENT ON TYPE core.btc_fee_arrays IS
    'One block''s sorted fee arrays (core.btc_block_fee_facts), as core.btc_fee_stats_of_blocks searches them.';
"""

# TimescaleDB adds a column with an expression only while the table has no columnstore: decompress, turn
# compression off, add the column, then the same settings and policy as revision 0007 again.
DECOMPRESS = """
SELECT remove_compression_policy('core.btc_block_fee_facts', if_exists => true);
SELECT decompress_chunk(c, if_compressed => true) FROM show_chunks('core.btc_block_fee_facts') AS c;
ALTER TABLE core.btc_block_fee_facts SET (timescaledb.compress = false);
"""

RECOMPRESS = """
ALTER TABLE core.btc_block_fee_facts SET (timescaledb.compress, timescaledb.compress_orderby = 'height');
SELECT add_compression_policy('core.btc_block_fee_facts', compress_after => 10000::bigint);
"""

CUMULATIVE = """
ALTER TABLE core.btc_block_fee_facts
    ADD COLUMN core_feerate_cum_weights_wu bigint[] NOT NULL
        GENERATED ALWAYS AS (core.btc_cumulative_sum(core_feerate_weights_wu)) STORED;
"""

LZ4 = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
        ALTER TABLE core.btc_block_fee_facts
            ALTER COLUMN fees_sorted_sat SET COMPRESSION lz4,
            ALTER COLUMN feerates_sorted_e8 SET COMPRESSION lz4;
    END IF;
END
$$;
"""


def upgrade() -> None:
    bind = op.get_bind()
    execute_sql(bind, TYPE)
    if timescaledb_installed(bind):
        execute_sql(bind, DECOMPRESS)
    # The generating function must exist first (sql/functions is re-applied after the revisions too).
    execute_sql(bind, (SQL_FUNCTIONS_DIR / "021_btc_fee_selection.sql").read_text())
    execute_sql(bind, CUMULATIVE)
    execute_sql(bind, LZ4)
    if timescaledb_installed(bind):
        execute_sql(bind, RECOMPRESS)


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
