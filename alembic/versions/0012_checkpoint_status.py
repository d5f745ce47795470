"""Checkpoint status is ok or error: 'running' was allowed by revision 0001 but nothing ever wrote it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

A stage's progress is its position (last_height / last_bucket_time); whether its last step failed is
status error with error_message, else ok. Lanes that are working say so in their heartbeat
(worker_<lane>:heartbeat, api.lane_status). Frozen once released.
"""

from alembic import op
from app.migrations import execute_sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

STATUS = """
UPDATE core.sync_checkpoints SET status = 'ok' WHERE status NOT IN ('ok', 'error');
ALTER TABLE core.sync_checkpoints DROP CONSTRAINT sync_checkpoints_status_check;
ALTER TABLE core.sync_checkpoints
    ADD CONSTRAINT sync_checkpoints_status_check CHECK (status IN ('ok', 'error'));
"""


def upgrade() -> None:
    execute_sql(op.get_bind(), STATUS)


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
