"""Compression that follows the pipeline: the time-partitioned hypertables' wall-clock compression
policies are replaced by jobs of core.compress_settled_chunks (sql/functions/015_compression.sql).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Why: TimescaleDB's policy compresses chunks older than now() - compress_after, and a sync writes
years-old buckets, so the policy compressed the chunks the 10m builder, the composer and the venue
loaders were writing (deadlocks between their UPSERTs and the policy job on the real server). The new
job compresses a chunk only once it ends `keep` (the old compress_after) before the slowest writer's
checkpoint. The height-partitioned tables keep their policies: their "now" is already the best stored
height (raw.btc_best_height). Frozen once released.
"""

import json

from alembic import op
from app.migrations import SQL_FUNCTIONS_DIR, execute_sql, timescaledb_installed

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Which checkpoints say how far each table's writers have come (LIKE patterns of component:interval).
FRONTIERS = {
    "core.btc_primitive_10m": ["btc_primitive_10m_builder:10m"],
    "core.mq_btc_price_10m": ["btc_price_canonical_composer:10m"],
    "raw.venue_candles": ["btc_price_source_%:10m"],
}


def frontier_checkpoints(hypertable: str) -> list[str]:
    if hypertable in FRONTIERS:
        return FRONTIERS[hypertable]
    schema, name = hypertable.split(".")
    if schema == "core" and name.endswith("_price_10m"):  # a venue table: its own source checkpoint
        return [f"btc_price_source_{name.removesuffix('_price_10m')}:10m"]
    raise RuntimeError(f"no frontier known for the compression policy of {hypertable}")


REPLACE = (
    "SELECT remove_compression_policy(%(hypertable)s::regclass)",
    """
SELECT add_job(
    'core.compress_settled_chunks', INTERVAL '1 hour',
    config => jsonb_build_object(
        'hypertable', %(hypertable)s::text, 'keep', %(keep)s::text,
        'frontier_checkpoints', %(frontier)s::jsonb
    )
)
""",
)


def upgrade() -> None:
    bind = op.get_bind()
    if not timescaledb_installed(bind):
        return
    # The job's procedure must exist before add_job names it (sql/functions is re-applied after the
    # revisions too; CREATE OR REPLACE makes that a no-op).
    execute_sql(bind, (SQL_FUNCTIONS_DIR / "015_compression.sql").read_text())
    conn = bind.connection.driver_connection
    policies = conn.execute(
        "SELECT format('%I.%I', j.hypertable_schema, j.hypertable_name), j.config ->> 'compress_after'"
        " FROM timescaledb_information.jobs AS j"
        " INNER JOIN timescaledb_information.dimensions AS d"
        "   ON (d.hypertable_schema, d.hypertable_name) = (j.hypertable_schema, j.hypertable_name)"
        "  AND d.dimension_number = 1"
        " WHERE j.proc_name = 'policy_compression' AND d.column_type = 'timestamp with time zone'::regtype"
        " ORDER BY 1"
    ).fetchall()
    for hypertable, keep in policies:
        params = {"hypertable": hypertable, "keep": keep, "frontier": json.dumps(frontier_checkpoints(hypertable))}
        for statement in REPLACE:
            conn.execute(statement, params)


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
