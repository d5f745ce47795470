"""TimescaleDB's jobs in health: api.timescaledb_jobs (one row per policy or user job: its last run, latest error
and health ok | failing | stale), the counts and the problem list in api.btc_health, and the API routes, all read
as mqnode_reader. On plain PostgreSQL the view has the same columns and no rows, and the counts are NULL (not
applicable). On PostgreSQL 15.20 every scheduler run is recorded as failed (SQLSTATE 24000, docs/operations.md),
so the tests make their own jobs whose outcome is known: one whose procedure raises, one not yet due, one overdue
that never ran; a job that ran must be reported as the scheduler recorded it, success or failure."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg.rows import dict_row

from app.api.app import create_app
from app.db import engine_info
from tests.conftest import wait_until

READER = "mqnode_reader"

JOB_COLUMNS = [
    ("job_id", "integer"),
    ("application_name", "text"),
    ("proc_name", "text"),
    ("hypertable", "text"),
    ("job_status", "text"),
    ("schedule_interval", "interval"),
    ("last_run_started_at", "timestamp with time zone"),
    ("last_successful_finish", "timestamp with time zone"),
    ("last_run_status", "text"),
    ("last_run_duration", "interval"),
    ("next_start", "timestamp with time zone"),
    ("total_runs", "bigint"),
    ("total_failures", "bigint"),
    ("last_error_message", "text"),
    ("last_error_sqlstate", "text"),
    ("last_error_at", "timestamp with time zone"),
    ("health", "text"),
]
HEALTH_JOB_COLUMNS = [
    ("timescaledb_jobs_total", "bigint"),
    ("timescaledb_jobs_failing", "bigint"),
    ("timescaledb_jobs_stale", "bigint"),
    ("timescaledb_job_problems", "jsonb"),
]

# The policies the migrations create (alembic 0001-0003): columnstore on the chain, 10m and venue tables,
# refresh on the four continuous aggregates.
VENUES = ("binance", "coinbase", "okx", "bybit", "bitstamp", "bitfinex")
COMPRESSED = {
    "raw.btc_tx_raw",
    "raw.btc_blocks_raw",
    "core.btc_primitive_block",
    "core.btc_block_fee_facts",
    "core.btc_block_utxo_facts",
    "core.btc_block_spent_by_day",
    "core.btc_primitive_10m",
    "core.mq_btc_price_10m",
    "raw.venue_candles",
} | {f"core.{venue}_price_10m" for venue in VENUES}
REFRESHED = {"core.btc_primitive_1h", "core.btc_primitive_24h", "core.mq_btc_price_1h", "core.mq_btc_price_24h"}
# TimescaleDB's compression policy, or a job of MQNODE's own procedure whose config names the hypertable.
COMPRESSION_PROCS = {"policy_compression", "compress_settled_chunks"}

TEST_PROCEDURES = """
CREATE OR REPLACE PROCEDURE public.mqnode_test_failing_job(job_id integer, config jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'planted job failure %', config ->> 'tag';
END
$$;
CREATE OR REPLACE PROCEDURE public.mqnode_test_quiet_job(job_id integer, config jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1;
END
$$;
"""


def engine(url: str):
    with psycopg.connect(url) as conn:
        return engine_info(conn)


@contextmanager
def as_reader(url: str):
    """A connection acting as mqnode_reader (the API's and Grafana's privileges), in one snapshot."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        conn.execute(f"SET LOCAL ROLE {READER}; SET LOCAL TimeZone = 'UTC'")
        try:
            yield conn
        finally:
            conn.execute("ROLLBACK")


def view_columns(url: str, view: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (view,),
        ).fetchall()


def jobs_and_health(url: str) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """api.timescaledb_jobs by job_id and the api.btc_health row, as the reader, from one snapshot."""
    with as_reader(url) as conn:
        jobs = {r["job_id"]: r for r in conn.execute("SELECT * FROM api.timescaledb_jobs").fetchall()}
        health = conn.execute("SELECT * FROM api.btc_health").fetchone()
    return jobs, health


def assert_health_counts_the_view(jobs: dict[int, dict[str, Any]], health: dict[str, Any]) -> None:
    by_health = [r["health"] for r in jobs.values()]
    assert set(by_health) <= {"ok", "failing", "stale"}
    assert health["timescaledb_jobs_total"] == len(jobs)
    assert health["timescaledb_jobs_failing"] == by_health.count("failing")
    assert health["timescaledb_jobs_stale"] == by_health.count("stale")
    problems = health["timescaledb_job_problems"]
    assert [p["job_id"] for p in problems] == sorted(j for j, r in jobs.items() if r["health"] != "ok")
    for p in problems:
        row = jobs[p["job_id"]]
        assert (p["health"], p["error"], p["hypertable"], p["job"]) == (
            row["health"],
            row["last_error_message"],
            row["hypertable"],
            row["application_name"],
        )


@pytest.fixture
def ts_jobs_url(ts_url):
    """A database on the TimescaleDB engine with the test procedures; jobs and procedures removed afterwards
    (the PGlite fallback keeps one database for the whole session)."""
    with psycopg.connect(ts_url, autocommit=True) as conn:
        conn.execute(TEST_PROCEDURES)
    try:
        yield ts_url
    finally:
        with psycopg.connect(ts_url, autocommit=True) as conn:
            for (job_id,) in conn.execute(
                "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name LIKE 'mqnode\\_test\\_%'"
            ).fetchall():
                conn.execute("SELECT delete_job(%s)", (job_id,))
            conn.execute("DROP PROCEDURE public.mqnode_test_failing_job, public.mqnode_test_quiet_job")


def add_job(url: str, proc: str, options: str = "", config: dict | None = None) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            f"SELECT add_job('public.{proc}', interval '1 hour', config => %s::jsonb{options})",
            (json.dumps(config) if config is not None else None,),
        ).fetchone()[0]


def needs_the_scheduler(url: str) -> None:
    if engine(url).is_pglite:
        pytest.skip("the PGlite engine runs no background workers: its jobs never run")


def wake_the_scheduler(url: str) -> None:
    """A running scheduler sleeps until its next known job is due and does not notice add_job until then
    (minutes); a restarted one reads every job and runs the due ones at once."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT _timescaledb_functions.restart_background_workers()")


def test_the_view_has_the_same_columns_on_both_engines(db_url):
    assert view_columns(db_url, "api.timescaledb_jobs") == JOB_COLUMNS
    assert view_columns(db_url, "api.btc_health")[-len(HEALTH_JOB_COLUMNS) :] == HEALTH_JOB_COLUMNS
    with as_reader(db_url) as conn:  # the reader may read both
        conn.execute("SELECT * FROM api.timescaledb_jobs").fetchall()
        conn.execute("SELECT * FROM api.btc_health").fetchone()


def test_plain_postgresql_has_no_jobs(pg_url):
    """Same view, no rows; health's job fields NULL (not applicable: nothing is scheduled without TimescaleDB,
    the rollups are refreshed by mqnode's own lane), not 0, which would claim jobs were looked at."""
    jobs, health = jobs_and_health(pg_url)
    assert jobs == {}
    assert {k: health[k] for k, _ in HEALTH_JOB_COLUMNS} == dict.fromkeys(dict(HEALTH_JOB_COLUMNS))
    with TestClient(app=create_app(pg_url, None)) as client:
        assert client.get("/api/v1/timescaledb/jobs").json() == {"items": [], "next_cursor": None}
        body = client.get("/api/v1/btc/health").json()
    assert {k: body[k] for k, _ in HEALTH_JOB_COLUMNS} == dict.fromkeys(dict(HEALTH_JOB_COLUMNS))


def test_every_policy_of_the_migrations_is_listed(ts_jobs_url):
    jobs, health = jobs_and_health(ts_jobs_url)
    by_hypertable = sorted((r["hypertable"], r["proc_name"]) for r in jobs.values())
    assert [h for h, _ in by_hypertable] == sorted(COMPRESSED | REFRESHED)  # one job each
    for hypertable, proc in by_hypertable:
        assert proc in (COMPRESSION_PROCS if hypertable in COMPRESSED else {"policy_refresh_continuous_aggregate"})
    assert all(j >= 1000 for j in jobs)  # TimescaleDB's own housekeeping jobs are not MQNODE's
    for row in jobs.values():
        assert row["schedule_interval"].total_seconds() > 0 and row["application_name"]
        # Whatever the scheduler has recorded so far (nothing on PGlite; failures on 15.20), failing is the
        # last run's status, and the error is the recorded one.
        assert (row["health"] == "failing") == (row["last_run_status"] == "Failed"), row
        if row["health"] == "failing":
            assert row["last_error_message"] and row["last_error_at"] and row["last_error_sqlstate"], row
    assert_health_counts_the_view(jobs, health)


def test_a_failing_job_is_failing_with_its_error(ts_jobs_url):
    """A job whose procedure raises, run by TimescaleDB's scheduler: failing, with the procedure's own
    message and SQLSTATE, counted in api.btc_health and listed among its problems, and so in the API."""
    needs_the_scheduler(ts_jobs_url)
    job_id = add_job(ts_jobs_url, "mqnode_test_failing_job", config={"tag": "t-4711"})
    wake_the_scheduler(ts_jobs_url)

    def failed():
        jobs, health = jobs_and_health(ts_jobs_url)
        row = jobs.get(job_id)
        return (jobs, health) if row and row["last_run_status"] == "Failed" else None

    jobs, health = wait_until(failed, timeout=120, interval=0.5)
    row = jobs[job_id]
    assert row["health"] == "failing" and row["total_failures"] >= 1 and row["total_runs"] >= 1
    assert row["last_error_message"].startswith("planted job failure t-4711")
    assert row["last_error_sqlstate"] == "P0001" and row["last_error_at"] >= row["last_run_started_at"]
    assert row["last_successful_finish"] is None and row["hypertable"] is None
    assert row["proc_name"] == "mqnode_test_failing_job"
    assert health["timescaledb_jobs_failing"] >= 1
    (problem,) = [p for p in health["timescaledb_job_problems"] if p["job_id"] == job_id]
    assert problem["health"] == "failing" and problem["error"].startswith("planted job failure t-4711")
    assert_health_counts_the_view(jobs, health)

    with TestClient(app=create_app(ts_jobs_url, None)) as client:
        items = client.get("/api/v1/timescaledb/jobs").json()["items"]
        body = client.get("/api/v1/btc/health").json()
    (item,) = [i for i in items if i["job_id"] == job_id]
    assert item["health"] == "failing" and item["last_error_message"].startswith("planted job failure t-4711")
    assert item["schedule_interval"] == "PT3600S"  # intervals as ISO 8601 durations
    assert any(p["job_id"] == job_id and p["health"] == "failing" for p in body["timescaledb_job_problems"])
    assert body["timescaledb_jobs_failing"] >= 1


def test_a_job_that_ran_is_reported_as_the_scheduler_recorded_it(ts_jobs_url):
    """A procedure that does nothing, run by the scheduler: ok where the run is recorded as a success; on
    PostgreSQL 15.20 every run is recorded as failed with SQLSTATE 24000 although the work is done, and
    health says so (it reports TimescaleDB's record, it does not second-guess it)."""
    needs_the_scheduler(ts_jobs_url)
    job_id = add_job(ts_jobs_url, "mqnode_test_quiet_job")
    wake_the_scheduler(ts_jobs_url)

    def ran():
        jobs, health = jobs_and_health(ts_jobs_url)
        row = jobs.get(job_id)
        return (jobs, health) if row and row["last_run_status"] is not None else None

    jobs, health = wait_until(ran, timeout=120, interval=0.5)
    row = jobs[job_id]
    if row["last_run_status"] == "Success":
        assert row["health"] == "ok" and row["total_failures"] == 0
        assert row["last_successful_finish"] >= row["last_run_started_at"]
        assert row["last_error_message"] is None
        assert job_id not in [p["job_id"] for p in health["timescaledb_job_problems"]]
    else:
        assert row["last_run_status"] == "Failed" and row["health"] == "failing"
        assert row["last_error_sqlstate"] == "24000", row
        assert row["last_error_message"] == 'cannot drop portal "" while it is being set up'
    assert_health_counts_the_view(jobs, health)


def test_a_job_not_yet_due_is_ok_and_one_overdue_that_never_ran_is_stale(ts_jobs_url):
    """Deterministic on every engine: no scheduler runs a job before its initial_start or a paused one."""
    due_tomorrow = add_job(ts_jobs_url, "mqnode_test_quiet_job", ", initial_start => now() + interval '1 day'")
    overdue = add_job(
        ts_jobs_url, "mqnode_test_quiet_job", ", initial_start => now() - interval '1 day', scheduled => false"
    )
    jobs, health = jobs_and_health(ts_jobs_url)
    assert jobs[due_tomorrow]["health"] == "ok" and jobs[due_tomorrow]["last_run_status"] is None
    assert jobs[due_tomorrow]["last_successful_finish"] is None
    # Hourly, and nothing since its initial start a day ago: far past 2 x 1 hour + 10 minutes.
    assert jobs[overdue]["health"] == "stale" and jobs[overdue]["job_status"] == "Paused"
    assert jobs[overdue]["last_run_status"] is None and jobs[overdue]["last_error_message"] is None
    assert health["timescaledb_jobs_stale"] >= 1
    (problem,) = [p for p in health["timescaledb_job_problems"] if p["job_id"] == overdue]
    assert problem["health"] == "stale" and problem["last_successful_finish"] is None
    assert due_tomorrow not in [p["job_id"] for p in health["timescaledb_job_problems"]]
    assert_health_counts_the_view(jobs, health)


def test_the_jobs_route_returns_the_view(db_url):
    """GET /api/v1/timescaledb/jobs: the view's rows in job_id order with every column; the health route's job
    fields. Columns that only the scheduler changes (a run may finish between two reads) compare by key."""
    with TestClient(app=create_app(db_url, None)) as client:
        body = client.get("/api/v1/timescaledb/jobs").json()
        health = client.get("/api/v1/btc/health").json()
    jobs, _ = jobs_and_health(db_url)
    assert body["next_cursor"] is None
    assert [i["job_id"] for i in body["items"]] == sorted(jobs)
    stable = ("job_id", "application_name", "proc_name", "hypertable")
    for item in body["items"]:
        row = jobs[item["job_id"]]
        assert list(item) == [name for name, _ in JOB_COLUMNS]
        assert {k: item[k] for k in stable} == {k: row[k] for k in stable}
        assert item["health"] in ("ok", "failing", "stale")
    if engine(db_url).has_timescaledb:
        assert health["timescaledb_jobs_total"] == len(jobs) == len(COMPRESSED | REFRESHED)
        refresh_1h = [i for i in body["items"] if i["hypertable"] == "core.btc_primitive_1h"]
        assert [i["schedule_interval"] for i in refresh_1h] == ["PT600S"]  # alembic 0003: every 10 minutes
    else:
        assert body["items"] == [] and health["timescaledb_jobs_total"] is None
