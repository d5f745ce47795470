"""Compact per-transaction facts: raw.btc_tx_raw stores the txid as 32 bytes and no copy of the block's time.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

- txid: bytea (the 32 bytes in the byte order Bitcoin Core prints, so encode(txid, 'hex') is the txid as
  Core shows it) instead of 64 characters of hex text;
- event_time dropped: it was the block's median time past (else header time) copied onto every
  transaction; the block's row has it (join on height);
- TimescaleDB's default index on height dropped (the primary key (height, tx_index) serves every read);
- on TimescaleDB the chunks are compressed per block: segmentby height, orderby tx_index (measured in
  docs/benchmarks.md against the previous orderby tx_index alone and orderby height, tx_index).
TimescaleDB cannot change a column's type while the table has compression on: its chunks are
decompressed, compression turned off, the columns changed, and compression (with the policy of revision
0001) turned on again; the policy compresses the chunks again. Frozen once released.
"""

from alembic import op
from app.migrations import execute_sql, timescaledb_installed

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COMPRESSION_OFF = """
SELECT remove_compression_policy('raw.btc_tx_raw', if_exists => true);
SELECT decompress_chunk(c, if_compressed => true) FROM show_chunks('raw.btc_tx_raw') AS c;
ALTER TABLE raw.btc_tx_raw SET (timescaledb.compress = false);
"""

COMPACT = """
ALTER TABLE raw.btc_tx_raw
    DROP COLUMN event_time,
    ALTER COLUMN txid TYPE bytea USING decode(txid, 'hex'),
    ADD CONSTRAINT btc_tx_raw_txid_check CHECK (octet_length(txid) = 32);
-- TimescaleDB's default index of a hypertable on its partitioning column duplicates the primary key's
-- leading column (height, tx_index): about a third of the uncompressed per-transaction bytes.
DROP INDEX IF EXISTS raw.btc_tx_raw_height_idx;
COMMENT ON COLUMN raw.btc_tx_raw.txid IS
    'The txid as 32 bytes in the order Bitcoin Core prints it (encode(txid, ''hex'')).';
"""

COMPRESSION_ON = """
ALTER TABLE raw.btc_tx_raw SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'height',
    timescaledb.compress_orderby = 'tx_index'
);
SELECT add_compression_policy('raw.btc_tx_raw', compress_after => 10000::bigint);
"""


def upgrade() -> None:
    bind = op.get_bind()
    timescaledb = timescaledb_installed(bind)
    if timescaledb:
        execute_sql(bind, COMPRESSION_OFF)
    execute_sql(bind, COMPACT)
    if timescaledb:
        execute_sql(bind, COMPRESSION_ON)


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
