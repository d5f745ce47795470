"""Grafana, checked without Grafana: the provisioning files parse and point at the right places, and every
panel query of deploy/grafana/dashboards, expanded the way Grafana's PostgreSQL datasource expands it, runs
on both engines as the read-only role over a database where every stage has run, and returns rows.

The expansion is a port of Grafana's (pkg/tsdb/sqleng Interpolate, then the PostgreSQL macro engine of
pkg/tsdb/grafana-postgresql-datasource/macros.go), checked against the expected strings of Grafana's own
macros_test.go; template variables are replaced the way the SQL datasources format a single value.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
import yaml

from app.db import engine_info
from tests.conftest import ROOT
from tests.pipeline import populate

DASHBOARD_DIR = ROOT / "deploy" / "grafana" / "dashboards"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
DATASOURCE_FILE = PROVISIONING / "datasources" / "mqnode.yaml"
PROVIDER_FILE = PROVISIONING / "dashboards" / "mqnode.yaml"
API_VIEWS_SQL = sorted((ROOT / "sql" / "functions").glob("09*_api_*.sql"))  # 090 and 092 (coin age)
READER_ROLE = "mqnode_reader"

# tests.pipeline's chain and prices span 2024-01-01 00:00 .. 2024-01-03 ~03:00 UTC.
TIME_FROM = datetime(2024, 1, 1, tzinfo=UTC)
TIME_TO = datetime(2024, 1, 4, tzinfo=UTC)
# $__interval: the datasource's minimum (one 10m bucket), and what wider ranges give.
INTERVALS = (timedelta(minutes=10), timedelta(hours=1), timedelta(days=1))


# --- Grafana's expansion ------------------------------------------------------------------------------


class MacroError(ValueError):
    """Grafana would refuse the query ("interpolation failed")."""


_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "M": timedelta(days=30),
    "y": timedelta(days=365),
}


def parse_interval(text: str) -> timedelta:
    """gtime.ParseInterval for the forms dashboards use: <integer><ms|s|m|h|d|w|M|y>."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|M|y)", text)
    if not match:
        raise MacroError(f"error parsing interval {text}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_interval(interval: timedelta) -> str:
    """gtime.FormatInterval: what $__interval becomes."""
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if interval.total_seconds() >= size:
            return f"{int(interval.total_seconds() // size)}{unit}"
    ms = int(interval.total_seconds() * 1000)
    return f"{ms}ms" if ms >= 1 else "1ms"


def rfc3339nano(t: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: fraction without trailing zeros, 'Z'."""
    t = t.astimezone(UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += ("." + f"{t.microsecond:06d}").rstrip("0")
    return text + "Z"


def _go_seconds(interval: timedelta) -> str:
    """fmt %v of a float64 number of seconds (300 -> '300', 0.02 -> '0.02')."""
    seconds = interval.total_seconds()
    return str(int(seconds)) if seconds == int(seconds) else repr(seconds)


def _check_fill(fill: str) -> None:
    """sqleng.SetupFillmode: NULL, previous or a number."""
    if fill in ("NULL", "previous"):
        return
    try:
        float(fill)
    except ValueError as exc:
        raise MacroError(f"error parsing fill value {fill}") from exc


_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


def _evaluate_macro(name: str, args: list[str], time_from: datetime, time_to: datetime, timescaledb: bool) -> str:
    if name == "__time":
        if not args[0]:
            raise MacroError(f"missing time column argument for macro {name}")
        return f'{args[0]} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "__timeFilter":
        if not args[0]:
            raise MacroError(f"missing time column argument for macro {name}")
        return f"{args[0]} BETWEEN '{rfc3339nano(time_from)}' AND '{rfc3339nano(time_to)}'"
    if name == "__timeFrom":
        return f"'{rfc3339nano(time_from)}'"
    if name == "__timeTo":
        return f"'{rfc3339nano(time_to)}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        if len(args) < 2:
            raise MacroError(f"macro {name} needs time column and interval and optional fill value")
        interval = parse_interval(args[1].strip("'"))
        if len(args) == 3:
            _check_fill(args[2])
        if timescaledb:
            group = f"time_bucket('{interval.total_seconds():.3f}s',{args[0]})"
        else:
            seconds = _go_seconds(interval)
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
        return group + (' AS "time"' if name == "__timeGroupAlias" else "")
    raise MacroError(f'unknown macro "{name}"')


def expand_macros(sql: str, time_from: datetime, time_to: datetime, timescaledb: bool) -> str:
    """postgresMacroEngine.Interpolate."""

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name == "__timeGroup":
            # Grafana < 5.3 compatibility: a ',' right after the (first) occurrence means "with alias".
            index = sql.find(match.group(0))
            if index >= 0:
                index += len(match.group(0))
                if len(sql) > index and sql[index] == ",":
                    name = "__timeGroupAlias"
        args = [a.strip(" ") for a in match.group(2).split(",")]
        return _evaluate_macro(name, args, time_from, time_to, timescaledb)

    return _MACRO.sub(replace, sql)


def expand_globals(sql: str, interval: timedelta, time_from: datetime, time_to: datetime) -> str:
    """sqleng.Interpolate: the substitutions every SQL datasource makes before its macros."""
    sql = sql.replace("$__interval_ms", str(int(interval.total_seconds() * 1000)))
    sql = sql.replace("$__interval", format_interval(interval))
    sql = sql.replace("$__unixEpochFrom()", str(int(time_from.timestamp())))
    return sql.replace("$__unixEpochTo()", str(int(time_to.timestamp())))


_TEMPLATE_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def expand_variables(sql: str, values: dict[str, str]) -> str:
    """The frontend's template replacement: dashboard variables only (Grafana's own $__ names are left to the
    backend); a single-valued variable goes in raw, quotes doubled (SqlDatasource.interpolateVariable)."""

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        if name in values:
            return values[name].replace("'", "''")
        return match.group(0)

    return _TEMPLATE_VARIABLE.sub(replace, sql)


def expand(
    raw_sql: str,
    variables: dict[str, str],
    interval: timedelta,
    timescaledb: bool,
    time_from: datetime = TIME_FROM,
    time_to: datetime = TIME_TO,
) -> str:
    sql = expand_variables(raw_sql, variables)
    sql = expand_globals(sql, interval, time_from, time_to)
    sql = expand_macros(sql, time_from, time_to, timescaledb)
    if "$" in sql:
        raise MacroError(f"left unexpanded: {sql[sql.index('$') :][:60]!r}")
    return sql


def test_expansion_matches_grafana_macro_tests():
    """The expected strings of Grafana's macros_test.go (range 2018-04-12 18:00 .. 18:05 UTC)."""
    start = datetime(2018, 4, 12, 18, 0, tzinfo=UTC)
    end = start + timedelta(minutes=5)

    def pg(sql: str) -> str:
        return expand_macros(sql, start, end, timescaledb=False)

    def ts(sql: str) -> str:
        return expand_macros(sql, start, end, timescaledb=True)

    assert pg("select $__time(time_column)") == 'select time_column AS "time"'
    assert pg("WHERE $__timeFilter(time_column)") == (
        "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
    )
    assert pg("select $__timeFrom()") == "select '2018-04-12T18:00:00Z'"
    assert pg("select $__timeTo()") == "select '2018-04-12T18:05:00Z'"
    assert pg("SELECT $__timeGroup(time_column,'5m'), value") == (
        'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value'
    )
    assert pg("SELECT $__timeGroup(time_column,'5m') as time, value") == (
        "SELECT floor(extract(epoch from time_column)/300)*300 as time, value"
    )
    assert pg("SELECT $__timeGroup(time_column,'5m')") == "SELECT floor(extract(epoch from time_column)/300)*300"
    assert pg("SELECT $__timeGroupAlias(time_column,'5m')") == (
        'SELECT floor(extract(epoch from time_column)/300)*300 AS "time"'
    )
    assert pg("$__timeGroup(time_column , '5m')") == "floor(extract(epoch from time_column)/300)*300"
    assert ts("GROUP BY $__timeGroup(time_column,'5m')") == "GROUP BY time_bucket('300.000s',time_column)"
    assert ts("GROUP BY $__timeGroup(time_column , '12d')") == "GROUP BY time_bucket('1036800.000s',time_column)"
    assert ts("GROUP BY $__timeGroup(time_column , '20ms')") == "GROUP BY time_bucket('0.020s',time_column)"
    assert rfc3339nano(datetime(1960, 2, 1, 7, 0, 0, 500_000, tzinfo=UTC)) == "1960-02-01T07:00:00.5Z"
    assert expand_globals("SELECT $__interval, $__interval_ms", timedelta(minutes=10), start, end) == (
        "SELECT 10m, 600000"
    )
    assert format_interval(timedelta(days=2)) == "2d" and format_interval(timedelta(seconds=90)) == "1m"
    with pytest.raises(MacroError):
        pg("SELECT $__timeGroup(time_column, '5m', sideways)")
    with pytest.raises(MacroError):
        pg("SELECT $__nope(x)")
    assert expand_variables("FROM api.v_${resolution} WHERE '$resolution' = 'x'", {"resolution": "1h"}) == (
        "FROM api.v_1h WHERE '1h' = 'x'"
    )


# --- The files ----------------------------------------------------------------------------------------


def load_dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def all_panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # panels inside a collapsed row


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref_id: str
    fmt: str
    raw_sql: str
    variables: dict[str, list[str]]


def dashboard_queries() -> list[Query]:
    queries = []
    for name, board in load_dashboards().items():
        variables = {v["name"]: [o["value"] for o in v["options"]] for v in board["templating"]["list"]}
        for panel in all_panels(board["panels"]):
            for t in panel.get("targets", []):
                queries.append(
                    Query(name, panel["title"], t["refId"], t.get("format", "time_series"), t["rawSql"], variables)
                )
    return queries


def datasource() -> dict:
    config = yaml.safe_load(DATASOURCE_FILE.read_text())
    assert config["apiVersion"] == 1 and len(config["datasources"]) == 1
    return config["datasources"][0]


def test_datasource_provisioning_points_at_the_database_as_the_grafana_role():
    ds = datasource()
    compose = load_compose()
    assert ds["type"] == "grafana-postgresql-datasource"
    host, port = ds["url"].split(":")
    assert host in compose["services"] and host == "db" and port == "5432"
    assert ds["jsonData"]["database"] == compose["services"]["db"]["environment"]["POSTGRES_DB"]
    assert ds["jsonData"]["sslmode"] == "disable"
    assert ds["jsonData"]["timescaledb"] is True
    assert ds["user"] == "mqnode_grafana"
    assert "mqnode_grafana" in (ROOT / "deploy" / "db" / "initdb" / "100-mqnode-roles.sh").read_text()
    # The password is the grafana container's environment variable, which compose fills from .env.
    password = ds["secureJsonData"]["password"]
    assert re.fullmatch(r"\$\{MQNODE_GRAFANA_DB_PASSWORD\}", password), password
    assert "MQNODE_GRAFANA_DB_PASSWORD" in compose["services"]["grafana"]["environment"]
    assert "MQNODE_GRAFANA_DB_PASSWORD" in compose["services"]["db"]["environment"]


def _mount_target(service: dict, source: str) -> str:
    for volume in service["volumes"]:
        parts = volume.split(":")
        if parts[0].rstrip("/") == source:
            return parts[1]
    raise AssertionError(f"{source} is not mounted")


def test_dashboard_provider_and_mounts_point_at_the_dashboard_files():
    config = yaml.safe_load(PROVIDER_FILE.read_text())
    assert config["apiVersion"] == 1 and len(config["providers"]) == 1
    provider = config["providers"][0]
    assert provider["type"] == "file"
    grafana = load_compose()["services"]["grafana"]
    assert _mount_target(grafana, "./deploy/grafana/dashboards") == provider["options"]["path"]
    assert _mount_target(grafana, "./deploy/grafana/provisioning/datasources") == (
        "/etc/grafana/provisioning/datasources"
    )
    assert _mount_target(grafana, "./deploy/grafana/provisioning/dashboards") == "/etc/grafana/provisioning/dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (DASHBOARD_DIR / home.rsplit("/", 1)[1]).exists(), home


API_VIEWS = {v for f in API_VIEWS_SQL for v in re.findall(r"CREATE OR REPLACE VIEW (api\.\w+)", f.read_text())}
_RELATION = re.compile(r"(?<!epoch )\b(?:from|join)\s+([a-z_][\w.]*)(?!\s*\()", re.IGNORECASE)
_CTE = re.compile(r"\b(\w+)\s+AS\s+(?:MATERIALIZED\s+)?\(", re.IGNORECASE)


def test_dashboards_are_well_formed_and_read_only_api_views():
    boards = load_dashboards()
    wanted = {"chain-activity", "fees", "supply-issuance", "prices", "valuation", "pipeline-health", "coin-age"}
    assert {name.removesuffix(".json") for name in boards} == wanted
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    uid = datasource()["uid"]
    for name, board in boards.items():
        assert board["title"].startswith("MQNODE") and "mqnode" in board["tags"], name
        ids = [p["id"] for p in all_panels(board["panels"])]
        assert len(ids) == len(set(ids)), name
        for variable in board["templating"]["list"]:
            # The test below knows how to expand custom single-value variables only.
            assert variable["type"] == "custom" and not variable["multi"] and not variable["includeAll"], name
            assert variable["current"]["value"] in [o["value"] for o in variable["options"]], name
        for panel in all_panels(board["panels"]):
            if panel["type"] == "row":
                continue
            assert panel["title"] and panel.get("gridPos"), (name, panel)
            assert panel["datasource"]["uid"] == uid, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for t in panel["targets"]:
                where = (name, panel["title"], t["refId"])
                assert t["datasource"]["uid"] == uid and t["rawQuery"] and t["editorMode"] == "code", where
                assert t["format"] in ("time_series", "table"), where
                # Newer Grafana strips SQL comments before expanding macros, older does not: keep none.
                assert "--" not in t["rawSql"] and "/*" not in t["rawSql"], where
    for q in dashboard_queries():
        for values in _variable_combinations(q.variables):
            sql = expand_variables(q.raw_sql, values)
            ctes = {m.lower() for m in _CTE.findall(sql)}
            for relation in _RELATION.findall(sql):
                assert relation.lower() in ctes or relation in API_VIEWS, (q.dashboard, q.panel, relation)


def _variable_combinations(variables: dict[str, list[str]]) -> list[dict[str, str]]:
    names = sorted(variables)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(variables[n] for n in names))]


# --- The queries against both engines -----------------------------------------------------------------


def _is_time(value) -> bool:
    return isinstance(value, datetime | int | float | Decimal)


# Views empty by design on plain PostgreSQL (it has no TimescaleDB jobs): their panels show "No data" there.
EMPTY_WITHOUT_TIMESCALEDB = {"api.timescaledb_jobs"}


def _problem(q: Query, columns: list[str], rows: list[tuple], may_be_empty: bool = False) -> str | None:
    """What Grafana would not show: no rows (unless may_be_empty); for time series, no `time` column, unsorted
    time, no value."""
    if not rows:
        return None if may_be_empty else "no rows"
    if q.fmt != "time_series":
        return None
    if "time" not in columns:
        return f"time series without a time column: {columns}"
    t = columns.index("time")
    times = [r[t] for r in rows]
    if not all(_is_time(v) for v in times):
        return "time column is not a timestamp or a number"
    if any(b < a for a, b in itertools.pairwise(times)):
        return "rows are not sorted by time"
    values = [i for i, c in enumerate(columns) if i != t and not all(isinstance(r[i], str) for r in rows)]
    if not any(r[i] is not None for r in rows for i in values):
        return f"no value in any row of {[columns[i] for i in values]}"
    return None


def test_every_panel_query_runs_as_the_reader_and_returns_rows(db_url):
    """Each target, for every value of the dashboard's variables, several $__interval values and both $__timeGroup
    forms (time_bucket as provisioned with timescaledb: true, and the plain floor(epoch) one), runs inside a
    rolled-back transaction after SET LOCAL ROLE mqnode_reader: the dashboards need nothing but the api views."""
    populate(db_url)
    with psycopg.connect(db_url) as conn:
        has_timescaledb = engine_info(conn).has_timescaledb
        # `mqnode run`'s lanes heartbeat; populate runs the stage functions directly, so record two here.
        with conn.transaction():
            conn.execute("SELECT core.lane_heartbeat('metrics')")
            conn.execute("SELECT core.lane_heartbeat('price_composer', 'RuntimeError: example failure')")
        with conn.transaction(force_rollback=True):
            conn.execute(f"SET LOCAL ROLE {READER_ROLE}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT 1 FROM core.btc_primitive_10m LIMIT 1")
        problems: list[str] = []
        checked: dict[str, str | None] = {}
        for q in dashboard_queries():
            if q.dashboard == COIN_AGE_DASHBOARD:
                continue  # tests.pipeline's chain has no prevouts: checked on the early chain below
            for values, interval, timescaledb in itertools.product(
                _variable_combinations(q.variables), INTERVALS, (True, False)
            ):
                where = f"{q.dashboard} / {q.panel} / {q.ref_id} {values} $__interval={format_interval(interval)}"
                try:
                    sql = expand(q.raw_sql, values, interval, timescaledb)
                except MacroError as exc:
                    problems.append(f"{where}: {exc}")
                    continue
                if sql not in checked:
                    may_be_empty = not has_timescaledb and bool(set(_RELATION.findall(sql)) & EMPTY_WITHOUT_TIMESCALEDB)
                    checked[sql] = _run_as_reader(conn, q, sql, may_be_empty)
                if checked[sql]:
                    problems.append(f"{where}: {checked[sql]}\n{sql}")
    assert not problems, "\n\n".join(problems)
    assert len(checked) > 100  # the combinations really were expanded


def _run_as_reader(
    conn: psycopg.Connection, q: Query, sql: str, may_be_empty: bool = False, columns_seen: dict | None = None
) -> str | None:
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(f"SET LOCAL ROLE {READER_ROLE}")
            cur = conn.execute(sql)
            columns = [d.name for d in cur.description]
            rows = cur.fetchall()
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    if columns_seen is not None:
        columns_seen[(q.panel, q.ref_id)] = columns
    return _problem(q, columns, rows, may_be_empty)


# --- The coin-age dashboard on a chain with prevouts ----------------------------------------------------

COIN_AGE_DASHBOARD = "coin-age.json"
# The early mainnet chain (tests/test_coin_age.py: sim-node raw blocks 0-438, a fixed daily close) spans
# 2009-01-03 .. 2009-01-15.
EARLY_FROM = datetime(2009, 1, 3, tzinfo=UTC)
EARLY_TO = datetime(2009, 1, 16, tzinfo=UTC)
HODL_BANDS = ("< 1d", "1d-1w", "1w-1m", "1-3m", "3-6m", "6-12m", "1-2y", "2-3y", "3-5y", "5-7y", "7-10y", "> 10y")
# What each panel must return for Grafana: its time column (time series) and the series it draws, by name.
COIN_AGE_COLUMNS = {
    "Realized price": ["realized price (USD)"],
    "MVRV": ["MVRV"],
    "SOPR (last $resolution period with spends)": ["SOPR"],
    "Long-term holder share": ["LTH share"],
    "Realized price and price": ["time", "price (USD)", "realized price (USD)"],
    "MVRV and NUPL": ["time", "MVRV", "NUPL"],
    "HODL waves (share of supply by coin age)": ["time", *HODL_BANDS],
    "SOPR and adjusted SOPR": ["time", "SOPR", "adjusted SOPR"],
    "Realized profit and loss (USD)": ["time", "realized profit", "realized loss"],
    "Coin days destroyed": ["time", "coin days destroyed", "dormancy (days)"],
    "Long- and short-term holder supply (BTC)": ["time", "long-term holders", "short-term holders"],
}


def test_coin_age_panels_run_as_the_reader_and_return_their_series(db_url, early_node):
    """Every coin-age panel query, expanded as Grafana does for each resolution, $__interval and both
    $__timeGroup forms, over the early mainnet chain with prevouts and a fixed price: it runs as the reader,
    returns the columns its panel draws, sorted time and a value; the HODL waves' bands add up to the whole."""
    from tests.test_coin_age import ingest, price_and_run_metrics

    ingest(db_url, early_node)
    price_and_run_metrics(db_url)
    queries = [q for q in dashboard_queries() if q.dashboard == COIN_AGE_DASHBOARD]
    assert {q.panel for q in queries} == set(COIN_AGE_COLUMNS)
    problems: list[str] = []
    checked: dict[str, str | None] = {}
    columns_seen: dict[tuple[str, str], list[str]] = {}
    with psycopg.connect(db_url) as conn:
        for q in queries:
            for values, interval, timescaledb in itertools.product(
                _variable_combinations(q.variables), INTERVALS, (True, False)
            ):
                where = f"{q.panel} / {q.ref_id} {values} $__interval={format_interval(interval)}"
                try:
                    sql = expand(q.raw_sql, values, interval, timescaledb, EARLY_FROM, EARLY_TO)
                except MacroError as exc:
                    problems.append(f"{where}: {exc}")
                    continue
                if sql not in checked:
                    checked[sql] = _run_as_reader(conn, q, sql, columns_seen=columns_seen)
                if checked[sql]:
                    problems.append(f"{where}: {checked[sql]}\n{sql}")
                elif columns_seen[(q.panel, q.ref_id)] != COIN_AGE_COLUMNS[q.panel]:
                    problems.append(f"{where}: columns {columns_seen[(q.panel, q.ref_id)]}")
        assert not problems, "\n\n".join(problems)
        (hodl,) = [q for q in queries if q.panel.startswith("HODL waves")]
        with conn.transaction(force_rollback=True):
            conn.execute(f"SET LOCAL ROLE {READER_ROLE}")
            rows = conn.execute(expand(hodl.raw_sql, {}, INTERVALS[0], True, EARLY_FROM, EARLY_TO)).fetchall()
    known = [r for r in rows if r[1] is not None]
    assert len(known) >= 5  # 2009-01-09 .. 15 (the chain resumes after the genesis day)
    assert all(abs(sum(r[1:]) - 1) <= Decimal("1e-7") for r in known)
    assert any(r[2] > 0 for r in known)  # coins older than a day: the waves really move


def test_coin_age_panels_draw_what_the_issue_asks():
    """Realized price against the price, MVRV and SOPR as unstacked time series; HODL waves as a stacked area of
    the bands' shares (filled, stacked, percent unit, 0..1)."""
    board = json.loads((DASHBOARD_DIR / COIN_AGE_DASHBOARD).read_text())
    panels = {p["title"]: p for p in board["panels"]}
    hodl = panels["HODL waves (share of supply by coin age)"]["fieldConfig"]["defaults"]
    assert hodl["custom"]["stacking"]["mode"] == "normal" and hodl["custom"]["fillOpacity"] > 0
    assert hodl["unit"] == "percentunit" and (hodl["custom"]["axisSoftMin"], hodl["custom"]["axisSoftMax"]) == (0, 1)
    for title in ("Realized price and price", "MVRV and NUPL", "SOPR and adjusted SOPR"):
        assert panels[title]["type"] == "timeseries", title
        assert panels[title]["fieldConfig"]["defaults"]["custom"].get("stacking", {}).get("mode", "none") == "none"


def test_dashboard_files_are_stably_formatted():
    """Reviewable diffs: two-space indented JSON with a final newline, the layout Grafana's export uses too."""
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        text = path.read_text()
        assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n", path.name
