"""The seed's backbone columns of btc_primitive_10m (revision 0009): first/last height and header time of
each bucket's blocks, open_time_ms and the hash rate estimates, against a reference computed here from the
raw blocks (hand-made chain, the real early mainnet chain through sim-node), on both engines; the revision's
fill of rows stored before it equals the builder's rows; the api view carries them."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext

import psycopg

from tests.chainrows import Block, Tx, insert_blocks
from tests.test_chain_sql import BTC, at, build, handmade_chain
from tests.test_early_chain import ingest_early_chain

COLUMNS = (
    "first_height, last_height, first_block_time_utc, last_block_time_utc, open_time_ms,"
    " hashrate_est_last, hashrate_est_mean_10m"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TEN_MINUTES = timedelta(minutes=10)


def r8(x: Decimal) -> Decimal:
    return x.quantize(Decimal("1E-8"), rounding=ROUND_HALF_UP)


def hashrate(difficulty: Decimal, seconds: int) -> Decimal:
    """difficulty x 2^32 / seconds, exact, then 8 decimals (the data contract's estimate)."""
    with localcontext() as ctx:
        ctx.prec = 80
        return r8(difficulty * 2**32 / seconds)


def bucket_of(ts: datetime) -> datetime:
    return EPOCH + ((ts - EPOCH) // TEN_MINUTES) * TEN_MINUTES


def expected_rows(conn: psycopg.Connection) -> dict[datetime, tuple]:
    """Per stored 10m bucket, the seven columns from the raw blocks alone: the blocks whose median time
    past falls in the bucket, genesis left out (state only), by height."""
    blocks = conn.execute(
        "SELECT height, block_time, median_time, difficulty FROM raw.btc_blocks_raw WHERE height > 0 ORDER BY height"
    ).fetchall()
    by_bucket: dict[datetime, list] = {}
    for height, block_time, median_time, difficulty in blocks:
        by_bucket.setdefault(bucket_of(median_time), []).append((height, block_time, difficulty))
    (first, last) = conn.execute(
        "SELECT min(bucket_start_utc), max(bucket_start_utc) FROM core.btc_primitive_10m"
    ).fetchone()
    out = {}
    bucket = first
    while bucket <= last:
        ms = int((bucket - EPOCH).total_seconds()) * 1000
        bs = by_bucket.get(bucket)
        if not bs:
            out[bucket] = (None, None, None, None, ms, None, None)
        else:
            total = sum(d for _, _, d in bs)
            mean = hashrate(total, 600 * len(bs))
            out[bucket] = (bs[0][0], bs[-1][0], bs[0][1], bs[-1][1], ms, hashrate(bs[-1][2], 600), mean)
        bucket += TEN_MINUTES
    return out


def stored_rows(conn: psycopg.Connection, relation: str = "core.btc_primitive_10m") -> dict[datetime, tuple]:
    rows = conn.execute(f"SELECT bucket_start_utc, {COLUMNS} FROM {relation} ORDER BY 1").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_block_span_on_handmade_chain(db_url):
    with psycopg.connect(db_url) as conn:
        insert_blocks(conn, handmade_chain())
        build(conn, at(44))
        got = stored_rows(conn)
        expected = expected_rows(conn)
    assert got == expected
    d = Decimal
    # Spelled out: 00:00 holds genesis (state only) and block 1 (difficulty 2); 00:10 is empty; 00:20 holds
    # blocks 2 and 3 (difficulties 3 and 4), header times 00:30 and 00:31:40.
    assert got[at(0)] == (1, 1, at(9), at(9), 1704067200000, d("14316557.65333333"), d("14316557.65333333"))
    assert got[at(10)] == (None, None, None, None, 1704067800000, None, None)
    assert got[at(20)] == (
        2,
        3,
        at(30),
        at(30) + timedelta(seconds=100),
        1704068400000,
        d("28633115.30666667"),  # 4 x 2^32 / 600
        d("25053975.89333333"),  # (3 + 4) x 2^32 / 1200
    )
    assert got[at(40)][:4] == (None, None, None, None)


def test_header_times_are_the_first_and_last_blocks_not_min_max(db_url):
    """Header times may go backwards: last_block_time_utc is the highest block's, even when earlier."""
    blocks = [
        Block(0, at(0), at(0), 50 * BTC),
        Block(1, at(12), at(11), 50 * BTC, [Tx(BTC, fee_sat=100)]),
        Block(2, at(17), at(12), 50 * BTC),
        Block(3, at(14), at(13), 50 * BTC),  # header time before block 2's
    ]
    with psycopg.connect(db_url) as conn:
        insert_blocks(conn, blocks)
        build(conn, at(20))
        got = stored_rows(conn)
        assert got == expected_rows(conn)
    assert got[at(10)][:4] == (1, 3, at(12), at(14))


def test_block_span_on_the_early_chain(db_url, early_node):
    """The real mainnet blocks 0-438 (difficulty 1 throughout) through sim-node and the loader."""
    ingest_early_chain(db_url, early_node)
    with psycopg.connect(db_url) as conn:
        got = stored_rows(conn)
        expected = expected_rows(conn)
        (blocks, buckets_with_blocks) = conn.execute(
            "SELECT sum(block_count), count(*) FILTER (WHERE block_count > 0) FROM core.btc_primitive_10m"
        ).fetchone()
        api = stored_rows(conn, "api.btc_primitive_10m")
    assert got == expected and api == got
    assert blocks == 438 and sum(1 for v in got.values() if v[0] is not None) == buckets_with_blocks
    # Difficulty 1: 2^32 / 600 H/s for every block, so last and mean agree wherever there is a block.
    one = hashrate(Decimal(1), 600)
    assert {(v[5], v[6]) for v in got.values() if v[0] is not None} == {(one, one)}
    assert one == Decimal("7158278.82666667")


def load_revision():
    from app.settings import PROJECT_DIR

    path = PROJECT_DIR / "alembic" / "versions" / "0009_backbone_block_span.py"
    spec = importlib.util.spec_from_file_location("revision_0009", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_revision_fills_rows_stored_before_it(db_url):
    """Rows built before revision 0009 had none of the columns: its fill gives what the builder writes."""
    revision = load_revision()
    with psycopg.connect(db_url) as conn:
        insert_blocks(conn, handmade_chain())
        build(conn, at(44))
        built = stored_rows(conn)
        with conn.transaction():
            conn.execute(f"UPDATE core.btc_primitive_10m SET ({COLUMNS}) = (NULL, NULL, NULL, NULL, NULL, NULL, NULL)")
            conn.execute(revision.FILL)
        assert stored_rows(conn) == built
