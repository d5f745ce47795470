"""Alembic environment: run the revisions, then re-apply the CREATE OR REPLACE files of sql/functions."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, pool

from alembic import context
from app.db import sqlalchemy_url
from app.migrations import apply_sql_functions

config = context.config


def database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("MQNODE_DATABASE_URL")
    if not url:
        raise RuntimeError("set MQNODE_DATABASE_URL (or run `mqnode db upgrade`, which starts the embedded server)")
    return sqlalchemy_url(url)


def run_migrations_offline() -> None:
    raise RuntimeError("offline (--sql) mode is not supported: revisions inspect the server (TimescaleDB or not)")


def run_migrations_online() -> None:
    # NullPool: the PGlite TimescaleDB engine accepts one connection at a time.
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()
            if config.attributes.get("apply_functions", True):
                apply_sql_functions(connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
