"""Chain parameters: the network the stored blocks belong to (getblockchaininfo.chain) and its halving
interval, recorded by the loader through core.set_chain (sql/functions/010_common.sql).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

A database without a row behaves as mainnet (every database before this revision held mainnet blocks).
"""

from alembic import op
from app.migrations import execute_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLE = """
CREATE TABLE core.chain_params (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    chain text NOT NULL,
    halving_interval_blocks integer NOT NULL CHECK (halving_interval_blocks > 0),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE core.chain_params IS
    'One row: the network of the stored blocks as Bitcoin Core names it (getblockchaininfo.chain: main, test, '
    'testnet4, signet, regtest) and its subsidy halving interval; written only by core.set_chain. '
    'No row: mainnet.';
"""


def upgrade() -> None:
    execute_sql(op.get_bind(), TABLE)


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
