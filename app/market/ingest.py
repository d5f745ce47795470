"""`mqnode prices ingest`: registry-driven venue ingestion into raw.venue_candles and <venue>_price_10m.

First run of a source: from config_json.historical_start_utc; later runs: from its checkpoint - 10m
(the last complete bucket is fetched again, and the forming one completes). Each fetched window is one
transaction: candles upserted, core.build_venue_price_10m over the window, checkpoint moved in SQL.
A registry row is one market of one venue (config_json plus the row's venue); its checkpoint is
btc_price_source_<source_name>. Sources in mode 'remote' (Binance, fed by the cloud collector through
the internal route) are skipped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from app import checkpoints
from app.db import require_idle
from app.market.candles import Candle
from app.market.fetch import VenueFetcher, VenueFetchError, utc

log = logging.getLogger(__name__)

WRITE_CANDLES = "SELECT candle_index, reason FROM core.write_venue_candles(%s, %s::jsonb)"
# core.write_venue_candles judges each candle (core.candle_problem, the interval grid) and upserts the valid
# ones; an unchanged candle fetched again keeps its loaded_at, so re-runs change nothing.


@dataclass
class SourceReport:
    source: str
    status: str  # ingested | stopped | skipped_remote | disabled | error
    start: datetime | None = None
    end: datetime | None = None
    candles: int = 0
    rejected: int = 0
    message: str = ""


def registry_rows(conn: psycopg.Connection, source: str | None) -> list[tuple[str, bool, dict]]:
    rows = conn.execute(
        "SELECT source_name, enabled, config_json || jsonb_build_object('venue', venue)"
        " FROM core.mq_price_source_registry"
        " WHERE %(source)s::text IS NULL OR source_name = %(source)s ORDER BY priority_rank",
        {"source": source},
    ).fetchall()
    conn.commit()
    if source and not rows:
        raise ValueError(f"price source {source!r} is not in mq_price_source_registry (run `mqnode prices seed`)")
    return rows


def write_candles(conn: psycopg.Connection, venue: str, candles: list[Candle]) -> list[tuple[int, str]]:
    """Child candles through core.write_venue_candles (in the caller's transaction): the valid ones are
    upserted; the others come back as (position in candles, reason) and are logged."""
    if not candles:
        return []
    payload = [
        {
            "symbol": c.symbol,
            "interval_sec": c.interval_sec,
            "open_time": c.open_time.isoformat(),
            "open": c.open,
            "high": c.high,
            "low": c.low,
            "close": c.close,
            "volume_base": c.volume_base,
            "volume_quote": c.volume_quote,
            "trade_count": c.trade_count,
            "raw": c.raw,
        }
        for c in candles
    ]
    rejected = conn.execute(WRITE_CANDLES, (venue, json.dumps(payload, default=str))).fetchall()
    for index, reason in rejected:
        log.warning("%s: rejected candle %s: %s", venue, json.dumps(candles[index].raw, default=str)[:200], reason)
    return rejected


def write_window(
    conn: psycopg.Connection, venue: str, symbol: str, start: datetime, end: datetime, candles: list[Candle]
) -> int:
    """One window in one transaction: the candles (write_candles), then core.build_venue_price_10m over the
    window. Returns the number of candles rejected."""
    require_idle(conn, "write_window (one transaction per window)")
    with conn.transaction():
        rejected = write_candles(conn, venue, candles)
        conn.execute(
            "SELECT core.build_venue_price_10m(%s, %s, %s, %s)", (venue, symbol, start, end - timedelta(seconds=1))
        )
    return len(rejected)


def ingest_source(
    conn: psycopg.Connection,
    source: str,
    enabled: bool,
    config: dict,
    now: datetime | None = None,
    fetcher: VenueFetcher | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> SourceReport:
    """One pass over one venue: from its checkpoint - 10m (first run: historical_start_utc, or the current
    bucket when auto_historical_backfill is false) to now, window by window (each committed); stops
    between windows when should_stop() says so; logs progress on long ranges."""
    if not enabled:
        return SourceReport(source, "disabled")
    if config.get("mode") == "remote":
        log.info("%s: mode remote (fed through the internal ingest route); no local fetch", source)
        return SourceReport(source, "skipped_remote")
    row = conn.execute(
        'SELECT last_bucket_time FROM core.sync_checkpoints WHERE (chain, component, "interval") = (%s, %s, %s)',
        checkpoints.price_source(source),
    ).fetchone()
    conn.commit()
    # A market's venue (config "venue", from the registry) picks the loader and the <venue>_price_10m table:
    # a venue may list several markets (BTC-USD, BTC-USDT, USDT-USD), each a registry row of its own.
    venue = config.get("venue", source)
    fetcher = fetcher or VenueFetcher(venue, config)
    now = now or datetime.now(UTC)
    end = datetime.fromtimestamp(int(now.timestamp()) // fetcher.interval_sec * fetcher.interval_sec, UTC)
    if row and row[0]:
        start = row[0] - timedelta(minutes=10)
    elif config.get("auto_historical_backfill", True):
        start = utc(config["historical_start_utc"])
    else:
        start = datetime.fromtimestamp(int(end.timestamp()) // 600 * 600, UTC)
    report = SourceReport(source, "ingested", start, end)
    span = max((end - start).total_seconds(), 1.0)
    logged = time.monotonic()
    try:
        for a, b, candles in fetcher.fetch(start, end):
            rejected = write_window(conn, venue, fetcher.symbol, a, b, candles)
            report.candles += len(candles) - rejected
            report.rejected += rejected
            if should_stop():
                report.status, report.end = "stopped", b
                log.info("%s: stopped at %s (resumes from its checkpoint)", source, b.isoformat())
                break
            if time.monotonic() - logged >= 10:
                logged = time.monotonic()
                log.info(
                    "%s: %s reached, %.1f%% of %s .. %s, %d candles",
                    source, b.isoformat(), 100 * (b - start).total_seconds() / span, start.date(), end.date(),
                    report.candles,
                )  # fmt: skip
    except VenueFetchError as exc:
        conn.rollback()
        with conn.transaction():
            conn.execute("SELECT core.checkpoint_error(%s, %s, %s, %s)", (*checkpoints.price_source(source), str(exc)))
        report.status, report.message = "error", str(exc)
        log.error("%s: %s (will resume from the checkpoint)", source, exc)
    report.rejected += fetcher.stats.rejected  # undecodable rows, rejected by the parser
    return report


def ingest_sources(
    conn: psycopg.Connection,
    source: str | None,
    now: datetime | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[SourceReport]:
    """One pass over one source or every enabled one; a failing source does not stop the others."""
    reports = []
    for name, enabled, config in registry_rows(conn, source):
        if should_stop():
            break
        if source is None and not enabled:
            continue
        reports.append(ingest_source(conn, name, enabled, config, now, should_stop=should_stop))
    return reports
