"""`mqnode metrics run`: every registered metric, one checkpointed step at a time, in dependency order.

The work is SQL (core.run_metric): each metric runs from its own checkpoint to what its dependencies'
checkpoints cover, in its own transaction; a failing metric is recorded in its checkpoint and the others
go on. Long ranges (a first run over years) are done in chunks, each committed: MQNODE_METRIC_CHUNK_DAYS
of periods (so many 10m buckets, hours or days), or `max_periods` periods when given. This loop is the one
runner: the order is core.metric_run_order's, each step core.run_metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from app.db import require_idle
from app.settings import Settings

log = logging.getLogger(__name__)

# One step's period cap: max_periods when given, else the periods of the interval in chunk_days.
_STEP = (
    "SELECT status, from_bucket, to_bucket, row_count, message FROM core.run_metric(%(m)s, %(i)s, coalesce("
    "%(n)s::integer, greatest(1, floor(%(days)s::numeric * 86400 / extract(EPOCH FROM core.period_width(%(i)s))))"
    "::integer))"
)


@dataclass
class MetricStep:
    metric_name: str
    interval: str
    status: str
    from_bucket: datetime | None
    to_bucket: datetime | None
    row_count: int
    message: str | None


def metric_order(conn: psycopg.Connection, metric: str | None, interval: str | None) -> list[tuple[str, str]]:
    rows = conn.execute(
        'SELECT metric_name, "interval" FROM core.metric_run_order'
        ' WHERE (%(m)s::text IS NULL OR metric_name = %(m)s) AND (%(i)s::text IS NULL OR "interval" = %(i)s)'
        " ORDER BY run_rank",
        {"m": metric, "i": interval},
    ).fetchall()
    conn.commit()
    if metric and not rows:
        known = conn.execute("SELECT 1 FROM core.metric_registry WHERE metric_name = %s", (metric,)).fetchone()
        conn.commit()
        if not known:
            raise ValueError(f"metric {metric!r} is not in metric_registry (see `mqnode metrics seed`)")
    return rows


def run_metrics(
    conn: psycopg.Connection,
    metric: str | None = None,
    interval: str | None = None,
    max_periods: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    chunk_days: float = Settings.metric_chunk_days,
) -> list[MetricStep]:
    """Run each enabled metric (or the one named) until it is up to date, errored or waiting, in chunks of
    max_periods periods (default: chunk_days of periods); between committed chunks, stop early when
    should_stop() says so (the next run resumes from the checkpoint)."""
    require_idle(conn, "run_metrics (one transaction per metric step)")
    steps: list[MetricStep] = []
    for name, iv in metric_order(conn, metric, interval):
        if should_stop():
            break
        total, first = 0, None
        while True:
            with conn.transaction():
                row = conn.execute(_STEP, {"m": name, "i": iv, "n": max_periods, "days": chunk_days}).fetchone()
            status, start, end, count, message = row
            first = first or start
            total += count or 0
            if status != "partial" or should_stop():
                break
        step = MetricStep(name, iv, status, first, end, total, message)
        if status == "error":
            log.error("metric %s %s failed: %s", name, iv, message)
        steps.append(step)
    return steps
