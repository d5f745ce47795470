"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from alembic import op
from app.migrations import execute_sql

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "execute_sql(op.get_bind(), '')"}


def downgrade() -> None:
    ${downgrades if downgrades else "raise NotImplementedError('revisions are frozen; restore from backup')"}
