"""Checkpoint keys are defined once: core.checkpoint_keys() in SQL and app/checkpoints.py in Python say the same,
every checkpoint the stages write is one of them, and no other file of app/ or sql/functions spells a key out
(SQL names them through core.checkpoint_component / core.checkpoint_pattern, Python through app.checkpoints)."""

from __future__ import annotations

import re

import psycopg
import pytest

from app import checkpoints
from tests.conftest import ROOT
from tests.pipeline import populate


def sql_keys(conn: psycopg.Connection) -> dict[str, tuple[str, str, str | None]]:
    rows = conn.execute('SELECT stage, chain, component, "interval" FROM core.checkpoint_keys()').fetchall()
    return {stage: (chain, component, interval) for stage, chain, component, interval in rows}


def test_sql_and_python_define_the_same_keys(db_url):
    with psycopg.connect(db_url) as conn:
        assert sql_keys(conn) == checkpoints.KEYS


@pytest.mark.parametrize(
    ("stage", "names", "interval"),
    [
        ("raw_blocks", (), None),
        ("node_tip", (), None),
        ("primitive_10m", (), None),
        ("price_composer", (), None),
        ("price_source", ("bitstamp_usdtusd",), None),
        ("rollup", ("mq_btc_price_24h",), "24h"),
        ("metric", ("market_cap_usd", "1h"), "1h"),
        ("lane", ("price_ingest",), None),
    ],
)
def test_components_and_patterns_agree(db_url, stage, names, interval):
    chain, component, key_interval = checkpoints.key(stage, *names, interval=interval)
    with psycopg.connect(db_url) as conn:
        sql_component, pattern = conn.execute(
            "SELECT core.checkpoint_component(%s, VARIADIC %s::text[]), core.checkpoint_pattern(%s)",
            (stage, list(names), stage),
        ).fetchone()
        assert sql_component == component
        if names:  # a family: its pattern matches its members and nothing of another stage
            others = [c for s, (_, c, _) in checkpoints.KEYS.items() if s != stage and "%s" not in c]
            matched = conn.execute(
                "SELECT %s LIKE %s, coalesce(bool_or(o LIKE %s), false) FROM unnest(%s::text[]) AS o",
                (component, pattern, pattern, others),
            ).fetchone()
            assert matched == (True, False)
    assert chain == "btc" and key_interval == (interval or checkpoints.KEYS[stage][2])


def test_an_unknown_stage_or_wrong_names_are_refused(db_url):
    with psycopg.connect(db_url) as conn:
        for args in (("raw_block",), ("metric", "nvt_raw"), ("raw_blocks", "extra")):
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                conn.execute("SELECT core.checkpoint_component(%s, VARIADIC %s::text[])", (args[0], list(args[1:])))
            conn.rollback()
    with pytest.raises(ValueError):
        checkpoints.key("metric", "nvt_raw")
    with pytest.raises(KeyError):
        checkpoints.key("raw_block")


def test_every_written_checkpoint_is_a_defined_key(db_url):
    """After every stage ran (blocks, backbone, venues, composer, rollups, metrics) and a lane beat."""
    populate(db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT core.lane_heartbeat('metrics')")
        conn.execute("SELECT core.set_checkpoint(%s, %s, %s, 1, NULL)", checkpoints.NODE_TIP)
        written = conn.execute('SELECT chain, component, "interval" FROM core.sync_checkpoints').fetchall()
        patterns = {
            stage: re.compile(re.escape(component).replace("%s", ".+") + "$")
            for stage, (_, component, _) in checkpoints.KEYS.items()
        }
    stages = set()
    for chain, component, interval in written:
        stage = next((s for s, p in patterns.items() if p.match(component)), None)
        assert stage is not None and chain == "btc", (chain, component, interval)
        fixed = checkpoints.KEYS[stage][2]
        assert fixed is None or interval == fixed, (component, interval)
        stages.add(stage)
    # price_source is the venue loader's (app/market/ingest.py), which the pipeline replaces by written rows.
    assert stages == set(checkpoints.KEYS) - {"price_source"}, set(checkpoints.KEYS) - stages


# A key spelled out: a quoted string that starts with a fixed component (whole, or with ':interval'), or with
# a family's prefix followed by a member name, a LIKE wildcard or a format placeholder.
_FIXED = [c for _, c, _ in checkpoints.KEYS.values() if "%s" not in c]
_PREFIXES = [c.split("%s", 1)[0] for _, c, _ in checkpoints.KEYS.values() if "%s" in c]
_SPELLED = re.compile(
    r"""['"](?:"""
    + "|".join(re.escape(c) + r"""['":]""" for c in _FIXED)
    + "|"
    + "|".join(
        # the prefix as written, or LIKE-escaped (btc\_metric\_), then quote, wildcard, placeholder or a name
        re.escape(p).replace("_", r"(?:\\{1,2})?_") + r"""(?:['"%{\\]|btc_|mq_|[a-z]+_(?:10m|1h|24h))"""
        for p in _PREFIXES
    )
    + ")"
)


def test_no_key_is_spelled_out_outside_its_definitions():
    found = []
    files = [*sorted((ROOT / "app").rglob("*.py")), *sorted((ROOT / "sql" / "functions").glob("*.sql"))]
    for path in files:
        if path == ROOT / "app" / "checkpoints.py":
            continue
        text = path.read_text()
        if path.name == "010_common.sql":  # the definition itself
            start = text.index("CREATE OR REPLACE FUNCTION core.checkpoint_keys()")
            end = text.index("$$;", text.index("AS $$", start))
            text = text[:start] + "\n" * text.count("\n", start, end) + text[end:]
        for number, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith(("--", "#")):  # prose may name a key
                continue
            if _SPELLED.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "checkpoint keys spelled out (use core.checkpoint_component / app.checkpoints):\n" + "\n".join(
        found
    )


def test_the_scan_knows_a_spelled_out_key():
    spelled = [
        "WHERE c.component = 'btc_raw_block_ingestion'",
        "ARRAY['rollup\\_%', 'btc\\_metric\\_%']",
        "format('btc_metric_%s_%s', r.metric_name, r.\"interval\")",
        "FILTER (WHERE c.component = 'rollup_btc_primitive_1h')",
        "'btc_primitive_10m_builder:10m'",
        'f"btc_price_source_{source}"',
        "'worker_' || p_lane",
    ]
    assert [line for line in spelled if not _SPELLED.search(line)] == []
    names = ["pg_notify('rollup_ready', x)", "FROM core.rollup_registry", "'btc_primitive_10m'", "'worker'"]
    assert [line for line in names if _SPELLED.search(line)] == []


def test_a_checkpoint_is_ok_or_error(db_url):
    """'running' was allowed but never written: the status check knows only what is written."""
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT core.set_checkpoint(%s, %s, %s, 1, NULL)", checkpoints.NODE_TIP)
        conn.execute("SELECT core.checkpoint_error(%s, %s, %s, 'down')", checkpoints.NODE_TIP)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE core.sync_checkpoints SET status = 'running' WHERE component = 'btc_node_tip'")
