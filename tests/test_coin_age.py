"""UTXO set and coin-age metrics on the real early mainnet chain (heights 0-438, sim-node raw blocks).

The loader ingests the chain at getblock verbosity 3 (sim-node resolves every prevout from the UTXO set
it keeps); every block's UTXO facts must equal an independent count from the raw blocks
(tests/coin_age_reference.py follows each output by outpoint), the backbone's UTXO columns the state
after each bucket's last block, and, with a fixed daily price series, the daily coin days destroyed,
realized cap, SOPR / adjusted SOPR, realized profit / loss, supply by age band and holder supply the
reference's per-output values. Both engines give identical coin-age rows.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg

from app.btc.backfill import backfill
from app.btc.chain_sync import IngestOptions
from app.metrics import run_metrics
from app.rollups import refresh_rollups
from app.simnode.rawblock import iter_raw_blocks, parse_block
from tests.coin_age_reference import BANDS, Ledger
from tests.simnode_proc import EARLY_CHAIN

UNTIL = datetime(2009, 1, 15, tzinfo=UTC)

COIN_AGE_TABLES = (
    "core.btc_block_utxo_facts",
    "core.btc_block_spent_by_day",
    *(f"core.btc_{stem}_{iv}" for stem in ("realized_cap", "sopr", "coin_days") for iv in ("10m", "1h", "24h")),
    "core.btc_supply_age_bands_24h",
    "core.btc_holder_supply_24h",
    "core.btc_utxo_age_day",
)


def fixed_close(day: date) -> Decimal:
    """The fixed test price series: a daily close that rises and falls (so spends realize profit and loss)."""
    return Decimal(3 + (day.toordinal() * 7) % 11) / 4


def early_ledger() -> Ledger:
    ledger = Ledger()
    for height, raw in enumerate(iter_raw_blocks(EARLY_CHAIN.read_bytes())):
        block = parse_block(raw)
        txs = [(t.txid, [(i["prev_txid"], i["prev_vout"]) for i in t.inputs], t.outputs) for t in block.txs]
        ledger.add_block(height, block.time, txs)
    return ledger


def price_and_run_metrics(url: str, close=fixed_close) -> None:
    """The test price series as the canonical 10m price of every backbone bucket, then rollups and metrics."""
    with psycopg.connect(url) as conn, conn.transaction():
        buckets = [r[0] for r in conn.execute("SELECT bucket_start_utc FROM core.btc_primitive_10m ORDER BY 1")]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO core.mq_btc_price_10m (bucket_start_utc, source_count, source_names, composition_method,"
                " open_price_usd, high_price_usd, low_price_usd, close_price_usd)"
                " VALUES (%s, 1, '{test}', 'test', %s, %s, %s, %s) ON CONFLICT (bucket_start_utc) DO UPDATE"
                " SET close_price_usd = excluded.close_price_usd",
                [(b, *(close(b.astimezone(UTC).date()),) * 4) for b in buckets],
            )
        conn.execute(
            "SELECT core.set_checkpoint('btc', 'btc_price_canonical_composer', '10m', NULL, %s, 'ok')", (buckets[-1],)
        )
    with psycopg.connect(url, autocommit=True) as conn:
        refresh_rollups(conn)
    with psycopg.connect(url) as conn:
        steps = run_metrics(conn)
    assert {s.status for s in steps} <= {"ok", "up_to_date"}, [s for s in steps if s.status not in ("ok", "up_to_date")]
    assert {(s.metric_name, s.interval) for s in steps} >= {("realized_cap", "10m"), ("holder_supply", "24h")}


def ingest(url: str, node, verbosity: int = 3) -> None:
    with psycopg.connect(url) as conn:
        report = backfill(
            conn,
            node.rpc(),
            "full",
            IngestOptions(batch_blocks=100, verbosity=verbosity),
            show_progress=False,
            build_until=UNTIL,
        )
    assert report.blocks == 439


def by_day(conn: psycopg.Connection, table: str, columns: str) -> dict[date, tuple]:
    rows = conn.execute(f"SELECT bucket_start_utc, {columns} FROM {table} ORDER BY 1").fetchall()
    return {r[0].astimezone(UTC).date(): r[1:] for r in rows}


def compare_with_reference(conn: psycopg.Connection, ledger: Ledger, close=fixed_close) -> int:
    """Every block's UTXO facts and every day's coin-age metrics against the reference; returns days checked."""
    facts = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT height, utxo_count_total, utxo_value_total_sat, utxo_bogo_total_bytes, created_utxo_count,"
            " spent_count, utxo_increase, utxo_size_inc_bytes FROM core.btc_block_utxo_facts ORDER BY height"
        )
    }
    assert sorted(facts) == sorted(ledger.blocks)
    for height, b in ledger.blocks.items():
        bogo_inc = sum(50 + o.script_len for o in b.created) - sum(50 + o.script_len for o in b.spent)
        expected = (b.utxo_count, b.utxo_value, b.utxo_bogo, len(b.created), len(b.spent))
        assert facts[height][:5] == expected, height
        assert facts[height][5:] == (len(b.created) - len(b.spent), bogo_inc), height

    # The backbone carries the state of each bucket's last block.
    for best, count, size in conn.execute(
        "SELECT best_block_height_last, utxo_count_total, utxo_set_size_total_bytes FROM core.btc_primitive_10m"
    ):
        assert (count, size) == (ledger.blocks[best].utxo_count, ledger.blocks[best].utxo_bogo), best

    cdd = by_day(conn, "core.btc_coin_days_24h", "cdd, spent_value_sat")
    realized = by_day(conn, "core.btc_realized_cap_24h", "realized_cap_usd, utxo_value_sat")
    sopr = by_day(conn, "core.btc_sopr_24h", "sopr, asopr, realized_profit_usd, realized_loss_usd")
    bands = by_day(conn, "core.btc_supply_age_bands_24h", ", ".join(f"supply_{b}_sat" for b, _ in BANDS))
    holders = by_day(
        conn, "core.btc_holder_supply_24h", "sth_supply_sat, lth_supply_sat, sth_realized_cap_usd, lth_realized_cap_usd"
    )
    days = ledger.days()
    for day in days:
        blocks = ledger.blocks_of_day(day)
        assert cdd[day] == (ledger.cdd(day), sum(o.value for b in blocks for o in b.spent)), day
        cap = ledger.realized_cap(day, close)
        assert realized[day] == (
            cap,
            ledger.blocks[max(b.height for b in ledger.blocks.values() if b.mtp < _day_end(day))].utxo_value,
        ), day
        profit, loss = ledger.realized_profit_loss(day, close)
        assert sopr[day] == (ledger.sopr(day, close), ledger.sopr(day, close, adjusted=True), profit, loss), day
        assert bands[day] == tuple(ledger.age_bands(day).values()), day
        sth, lth = ledger.holders(day)
        assert holders[day][:2] == (sth, lth), day
        assert holders[day][2:] == ledger.holder_realized_caps(day, close), day
        assert abs(holders[day][2] + holders[day][3] - cap) <= Decimal("0.00000002"), day
    return len(days)


def _day_end(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) + 86400


def stage_statistics(conn: psycopg.Connection) -> tuple[int, float]:
    return conn.execute(
        "SELECT relpages, reltuples FROM pg_class WHERE oid = 'raw.btc_prevout_stage'::regclass"
    ).fetchone()


def leave_the_stage_as_vacuum_does(url: str) -> None:
    """The stage as autovacuum leaves it between batches: pages on disk, 0 rows recorded (the planner then
    takes any batch's stage rows for one)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE raw.btc_prevout_stage SET (vacuum_truncate = false)")
        conn.execute(
            "INSERT INTO raw.btc_prevout_stage (spend_height, created_height, value_sat, script_bytes, is_coinbase)"
            " SELECT 1000000 + g, 1, 1, 1, false FROM generate_series(1, 5000) AS g"
        )
        conn.execute("DELETE FROM raw.btc_prevout_stage")
        conn.execute("VACUUM raw.btc_prevout_stage")
        pages, tuples = stage_statistics(conn)
        assert pages > 0 and tuples == 0, (pages, tuples)


def test_early_chain_utxo_set_and_coin_age_metrics_equal_the_reference(db_url, early_node):
    leave_the_stage_as_vacuum_does(db_url)
    ingest(db_url, early_node)
    with psycopg.connect(db_url) as conn:
        # core.build_block_utxo_facts analysed the stage inside the batch (its own rows) before joining it.
        assert stage_statistics(conn)[1] > 0
    price_and_run_metrics(db_url)
    ledger = early_ledger()
    with psycopg.connect(db_url) as conn:
        assert compare_with_reference(conn, ledger) >= 5
        # The chain's spends: 7 transactions of Jan 2009, coins of hours and days.
        assert sum(len(b.spent) for b in ledger.blocks.values()) >= 7
        (cdd_total,) = conn.execute("SELECT sum(cdd) FROM core.btc_coin_days_24h").fetchone()
        assert cdd_total > 0
        # The 10m and 1h realized caps end each day where the daily one does.
        for iv in ("10m", "1h"):
            (mismatch,) = conn.execute(
                f"SELECT count(*) FROM core.btc_realized_cap_24h AS d JOIN LATERAL ("
                f" SELECT t.realized_cap_usd FROM core.btc_realized_cap_{iv} AS t"
                " WHERE t.bucket_start_utc < d.bucket_start_utc + INTERVAL '1 day'"
                " ORDER BY t.bucket_start_utc DESC LIMIT 1) AS x ON true"
                " WHERE x.realized_cap_usd IS DISTINCT FROM d.realized_cap_usd"
            ).fetchone()
            assert mismatch == 0, iv
        # A drift of one satoshi in one day's spends is seen.
        conn.execute(
            "UPDATE core.btc_block_spent_by_day SET value_sat = value_sat + 1"
            " WHERE spend_height = (SELECT min(spend_height) FROM core.btc_block_spent_by_day)"
        )
        conn.execute("DELETE FROM core.sync_checkpoints WHERE component LIKE 'btc\\_metric\\_%'")
        conn.commit()
    with psycopg.connect(db_url) as conn:
        run_metrics(conn)
        try:
            compare_with_reference(conn, ledger)
        except AssertionError:
            pass
        else:
            raise AssertionError("a one-satoshi drift in the spent facts went unnoticed")


def test_verbosity_2_leaves_coin_age_unknown_never_zero(db_url, early_node):
    ingest(db_url, early_node, verbosity=2)
    price_and_run_metrics(db_url)
    with psycopg.connect(db_url) as conn:
        (first_spend,) = conn.execute(
            "SELECT min(height) FROM core.btc_block_utxo_facts WHERE input_count > 0"
        ).fetchone()
        assert first_spend == 170
        rows = conn.execute(
            "SELECT height, prevouts_known, spent_count, utxo_count_total FROM core.btc_block_utxo_facts"
            " WHERE height >= 170 ORDER BY height"
        ).fetchall()
        assert rows[0][1:] == (False, None, None)
        assert all(r[3] is None for r in rows)
        day = conn.execute(
            "SELECT cdd, sopr FROM core.btc_coin_days_24h AS c JOIN core.btc_sopr_24h AS s USING (bucket_start_utc)"
            " WHERE c.bucket_start_utc = '2009-01-12'"
        ).fetchone()
        assert day == (None, None)
        (caps,) = conn.execute(
            "SELECT count(*) FROM core.btc_realized_cap_24h WHERE bucket_start_utc >= '2009-01-12'"
            " AND realized_cap_usd IS NOT NULL"
        ).fetchone()
        assert caps == 0


def test_engines_give_identical_coin_age_rows(pg_url, ts_url, early_node):
    snapshots = []
    for url in (pg_url, ts_url):
        ingest(url, early_node)
        price_and_run_metrics(url)
        with psycopg.connect(url) as conn:
            snapshots.append({t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in COIN_AGE_TABLES})
    for table in COIN_AGE_TABLES:
        assert snapshots[0][table], table
        assert snapshots[0][table] == snapshots[1][table], table


def test_day_boundaries_of_the_reference():
    """The band rule in days (the SQL's core.btc_age_band is compared through the metrics above)."""
    from tests.coin_age_reference import band_of

    assert [band_of(d) for d in (0, 1, 6, 7, 29, 30, 364, 365, 3649, 3650)] == [
        "lt_1d",
        "1d_1w",
        "1d_1w",
        "1w_1m",
        "1w_1m",
        "1m_3m",
        "6m_12m",
        "1y_2y",
        "7y_10y",
        "gt_10y",
    ]
    assert date(2009, 1, 3) + timedelta(days=1) == date(2009, 1, 4)


def test_verbosity_follows_the_node_version_and_sim_node_reports_core_29_for_every_chain():
    """Core >= 23 is read at verbosity 3; older nodes and an explicit 2 at 2. sim-node reports Core 29 for raw
    and synthetic chains alike: both give real prevouts (tests/test_coin_age_synthetic.py checks them)."""
    from app.btc.chain_sync import getblock_verbosity
    from app.btc.rpc import RpcError
    from app.simnode.chain import SimChain
    from app.simnode.server import SimNodeServer

    class Node:
        def __init__(self, version):
            self.version = version

        def call(self, method, *params):
            assert method == "getnetworkinfo"
            if self.version is None:
                raise RpcError(method, "Method not found", -32601)
            return {"version": self.version}

    assert getblock_verbosity(Node(290000), 3) == 3
    assert getblock_verbosity(Node(230000), 3) == 3
    assert getblock_verbosity(Node(220000), 3) == 2
    assert getblock_verbosity(Node(None), 3) == 2
    assert getblock_verbosity(Node(290000), 2) == 2

    raw = SimChain()
    raw.add_raw_file(EARLY_CHAIN)
    synthetic = SimChain(txs_per_block=10)
    synthetic.add_synthetic(2, 840_000)
    for chain in (raw, synthetic):
        server = SimNodeServer(chain)
        try:
            info = json.loads(server.dispatch("getnetworkinfo", []))
        finally:
            server.httpd.server_close()
        assert getblock_verbosity(Node(info["version"]), 3) == 3, chain


DAILY_SPLIT = (("supply_age_bands", "btc_supply_age_bands_24h"), ("holder_supply", "btc_holder_supply_24h"))


def _daily_split_rows(conn: psycopg.Connection) -> dict[str, list]:
    rows = {t: conn.execute(f"SELECT * FROM core.{t} ORDER BY 1").fetchall() for _, t in DAILY_SPLIT}
    rows["snapshots"] = conn.execute("SELECT * FROM core.btc_utxo_age_day ORDER BY 1").fetchall()
    return rows


def _split_of(conn: psycopg.Connection, day) -> list[int]:
    return conn.execute("SELECT unspent_sat FROM core.btc_utxo_age_day WHERE day = %s", (day,)).fetchone()[0]


def _run_daily_split(conn: psycopg.Connection, day_from, day_to) -> None:
    for metric, table in DAILY_SPLIT:
        conn.execute(f"SELECT core.metric_{metric}('24h', %s, %s, %s)", (day_from, day_to, table))


def test_daily_split_snapshots_day_by_day_equal_one_pass_and_a_stale_snapshot_is_not_built_on(db_url, early_node):
    """The daily age-band and holder metrics built one day at a time (each day from the day before's
    snapshot, as the lane runs them) give the rows of one pass over every day; a stored snapshot is built on
    only while the chain below it is the one it was made from (else its base is computed from the facts)."""
    ingest(db_url, early_node)
    price_and_run_metrics(db_url)
    with psycopg.connect(db_url) as conn:
        one_pass = _daily_split_rows(conn)
        days = [r[0] for r in one_pass["btc_supply_age_bands_24h"]]
        last, before = days[-1].date(), days[-2].date()
        assert len(days) >= 10 and len(one_pass["snapshots"]) == len(days)
        # The last day's split: one entry per day from genesis's (Jan 3) on, coins of six days or more left.
        expected = _split_of(conn, last)
        assert len(expected) == (last - date(2009, 1, 3)).days + 1 and sum(1 for v in expected if v) >= 6
        for _, table in DAILY_SPLIT:
            conn.execute(f"TRUNCATE core.{table}")
        conn.execute("TRUNCATE core.btc_utxo_age_day")
        for day in days:
            _run_daily_split(conn, day, day)
        conn.commit()
        assert _daily_split_rows(conn) == one_pass

        # The snapshot is what a day is built on: a changed entry of day D - 1 shows in day D.
        i = next(n for n, v in enumerate(_split_of(conn, before), 1) if v)
        conn.execute(
            "UPDATE core.btc_utxo_age_day SET unspent_sat[%s] = unspent_sat[%s] + 1 WHERE day = %s", (i, i, before)
        )
        conn.execute("SELECT core.build_btc_utxo_age_days(%s, %s)", (last, last))
        drifted = _split_of(conn, last)
        assert sum(drifted) == sum(expected) + 1 and drifted[i - 1] == expected[i - 1] + 1
        # Recorded as made from another chain (another hash of its last block): not built on, the base comes
        # from the facts and day D is right again.
        conn.execute("UPDATE core.btc_utxo_age_day SET state_hash = 'other' WHERE day = %s", (before,))
        _run_daily_split(conn, days[-1], days[-1])
        assert _split_of(conn, last) == expected
        # No snapshot before the range at all: the same.
        conn.execute("DELETE FROM core.btc_utxo_age_day WHERE day = %s", (before,))
        _run_daily_split(conn, days[-1], days[-1])
        rows = _daily_split_rows(conn)
        for key in ("btc_supply_age_bands_24h", "btc_holder_supply_24h"):
            assert rows[key] == one_pass[key], key
        assert _split_of(conn, last) == expected
        conn.rollback()


def _rolled_up(rows: list[tuple], width: timedelta) -> dict[datetime, tuple]:
    """10m rows (bucket, count total, size total, size increment) -> per period: the last bucket's totals and
    the sum of the increments (None when one of them is unknown)."""
    periods: dict[datetime, list[tuple]] = {}
    for row in sorted(rows):
        start = datetime.fromtimestamp(row[0].timestamp() // width.total_seconds() * width.total_seconds(), UTC)
        periods.setdefault(start, []).append(row)
    out = {}
    for start, parts in periods.items():
        incs = [p[3] for p in parts]
        out[start] = (parts[-1][1], parts[-1][2], None if None in incs else sum(incs))
    return out


def test_rollups_carry_the_utxo_columns_of_the_10m_backbone(db_url, early_node):
    """api.btc_primitive_1h / _24h: utxo_count_total and utxo_set_size_total_bytes are the last 10m bucket's
    of the period, utxo_size_inc_bytes the sum of its 10m utxo_size_inc_bytes_10m (continuous aggregates on
    TimescaleDB, tables refreshed by core.refresh_rollup on PostgreSQL)."""
    ingest(db_url, early_node)
    price_and_run_metrics(db_url)
    with psycopg.connect(db_url) as conn:
        tenm = conn.execute(
            "SELECT bucket_start_utc, utxo_count_total, utxo_set_size_total_bytes, utxo_size_inc_bytes_10m"
            " FROM api.btc_primitive_10m"
        ).fetchall()
        assert len(tenm) > 1000 and all(r[1] is not None and r[3] is not None for r in tenm)
        for interval, width in (("1h", timedelta(hours=1)), ("24h", timedelta(days=1))):
            got = {
                r[0]: r[1:]
                for r in conn.execute(
                    "SELECT bucket_start_utc, utxo_count_total, utxo_set_size_total_bytes, utxo_size_inc_bytes"
                    f" FROM api.btc_primitive_{interval}"
                )
            }
            expected = _rolled_up(tenm, width)
            assert got == expected, interval
            # Not a trivial equality: the set grows and the periods' increments add up to the final size.
            assert max(v[0] for v in got.values()) > 400
            assert sum(v[2] for v in got.values()) == max(tenm)[2] > 0
