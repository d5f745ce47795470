"""The seed's backbone columns on core.btc_primitive_10m: the bucket's block span and hash rate estimates.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

- first_height, last_height: the first and last block (by height) counted in the bucket (the blocks of its
  flows: the genesis block is state only); first_block_time_utc, last_block_time_utc: their header times;
- open_time_ms: the bucket start in milliseconds since 1970-01-01 UTC (every bucket);
- hashrate_est_last: the last block's difficulty x 2^32 / 600 s (H/s); hashrate_est_mean_10m: the mean of
  that estimate over the bucket's blocks. NULL (all but open_time_ms) for a bucket without a counted block.
Computed by the 10m builder (core.btc_primitive_10m_block_span, sql/functions/040_btc_primitive_10m.sql);
rows stored before this revision are filled here through the same function. Frozen once released.
"""

from alembic import op
from app.migrations import SQL_FUNCTIONS_DIR, execute_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = """
ALTER TABLE core.btc_primitive_10m
    ADD COLUMN first_height bigint,
    ADD COLUMN last_height bigint,
    ADD COLUMN first_block_time_utc timestamptz,
    ADD COLUMN last_block_time_utc timestamptz,
    ADD COLUMN open_time_ms bigint,
    ADD COLUMN hashrate_est_last numeric,
    ADD COLUMN hashrate_est_mean_10m numeric;
"""

# Rows stored before this revision, up to the blocks the builder had included (its checkpoint height).
FILL = """
UPDATE core.btc_primitive_10m AS p
SET first_height = s.first_height,
    last_height = s.last_height,
    first_block_time_utc = s.first_block_time_utc,
    last_block_time_utc = s.last_block_time_utc,
    hashrate_est_last = s.hashrate_est_last,
    hashrate_est_mean_10m = s.hashrate_est_mean_10m
FROM core.btc_primitive_10m_block_span(
    (SELECT min(t.bucket_start_utc) FROM core.btc_primitive_10m AS t),
    (SELECT max(t.bucket_start_utc) FROM core.btc_primitive_10m AS t),
    (SELECT c.last_height FROM core.sync_checkpoints AS c
     WHERE c.chain = 'btc' AND c.component = 'btc_primitive_10m_builder' AND c."interval" = '10m')
) AS s
WHERE p.bucket_start_utc = s.bucket_start_utc;
UPDATE core.btc_primitive_10m SET open_time_ms = core.epoch_ms(bucket_start_utc);
"""


def upgrade() -> None:
    bind = op.get_bind()
    execute_sql(bind, COLUMNS)
    # The functions the fill calls must exist first (sql/functions is re-applied after the revisions too).
    # Bodies are not checked here: a later revision may add columns the files already name.
    execute_sql(bind, "SET check_function_bodies = off")
    for name in ("010_common.sql", "040_btc_primitive_10m.sql"):
        execute_sql(bind, (SQL_FUNCTIONS_DIR / name).read_text())
    execute_sql(bind, "RESET check_function_bodies")
    execute_sql(bind, FILL)


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
