"""Chain parameters from the node: core.set_chain records getblockchaininfo.chain, the SQL derives the
halving interval from it (max subsidy, halving epoch), a second chain over stored blocks is refused.
Both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from app.btc import chain_sync
from app.btc.chain_sync import IngestOptions
from app.btc.listener import ChainListener
from app.btc.rpc import BitcoinRpc, RpcConfig
from app.simnode.chain import SimChain
from app.simnode.server import SimNodeServer
from tests.chainrows import Block, insert_blocks

BTC = 100_000_000
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def subsidy_and_epoch(conn: psycopg.Connection, heights: list[int]) -> list[tuple[int, int]]:
    rows = conn.execute(
        "SELECT core.btc_max_subsidy_sat(h), core.btc_halving_epoch(h) FROM unnest(%s::bigint[]) AS h",
        (heights,),
    ).fetchall()
    conn.commit()
    return rows


def set_chain(conn: psycopg.Connection, chain: str) -> str:
    with conn.transaction():
        return conn.execute("SELECT core.set_chain(%s)", (chain,)).fetchone()[0]


def recorded(conn: psycopg.Connection) -> tuple | None:
    row = conn.execute("SELECT chain, halving_interval_blocks FROM core.chain_params").fetchone()
    conn.commit()
    return row


def blocks(heights: range) -> list[Block]:
    return [Block(h, T0 + timedelta(minutes=10 * h), T0 + timedelta(minutes=10 * h - 5), 25 * BTC) for h in heights]


def test_halving_interval_by_chain_name(db_url):
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT c, core.btc_halving_interval(c) FROM unnest(ARRAY['main', 'test', 'testnet4', 'signet',"
            " 'regtest']) AS c"
        ).fetchall()
        assert rows == [
            ("main", 210_000),
            ("test", 210_000),
            ("testnet4", 210_000),
            ("signet", 210_000),
            ("regtest", 150),
        ]
        conn.commit()
        for name in ("mainnet", "testnet3", None):
            with pytest.raises(psycopg.Error, match="unknown chain") as info:
                conn.execute("SELECT core.btc_halving_interval(%s)", (name,))
            assert info.value.sqlstate == "MQ002"
            conn.rollback()


def test_regtest_halves_every_150_blocks_mainnet_unchanged(db_url):
    with psycopg.connect(db_url) as conn:
        mainnet = [(50 * BTC, 0), (50 * BTC, 0), (50 * BTC, 0), (50 * BTC, 0), (25 * BTC, 1), (1_250_000_000, 2)]
        heights = [149, 150, 300, 209_999, 210_000, 420_000]
        assert recorded(conn) is None
        assert subsidy_and_epoch(conn, heights) == mainnet  # no chain recorded: mainnet
        assert subsidy_and_epoch(conn, [6_720_000, 6_930_000, 13_440_000]) == [(1, 32), (0, 33), (0, 64)]

        assert set_chain(conn, "regtest") == "regtest"
        assert recorded(conn) == ("regtest", 150)
        # 50, 25 and 12.5 BTC; epochs 0, 1, 2
        assert subsidy_and_epoch(conn, [149, 150, 300]) == [(50 * BTC, 0), (25 * BTC, 1), (1_250_000_000, 2)]
        assert subsidy_and_epoch(conn, [299, 9_600]) == [(25 * BTC, 1), (0, 64)]

        # The builders use it: per-block max subsidy, the 10m halving epoch (one block per bucket here).
        insert_blocks(conn, blocks(range(148, 302)))
        with conn.transaction():
            conn.execute("SELECT * FROM core.build_primitive_10m(%s, NULL)", (T0 + timedelta(minutes=10 * 302),))
        rows = conn.execute(
            "SELECT p.height, p.max_subsidy_sat, p.subsidy_sat, m.halving_epoch FROM core.btc_primitive_block AS p"
            " LEFT JOIN core.btc_primitive_10m AS m ON m.best_block_height_last = p.height"
            " WHERE p.height IN (149, 150, 299, 300) ORDER BY p.height"
        ).fetchall()
        assert rows == [
            (149, 50 * BTC, 25 * BTC, 0),
            (150, 25 * BTC, 25 * BTC, 1),
            (299, 25 * BTC, 25 * BTC, 1),
            (300, 1_250_000_000, 1_250_000_000, 2),  # the 25 BTC coinbase claims more than allowed
        ]

        # Mainnet recorded explicitly is mainnet, like no record (a fresh connection of the other engine too).
        with conn.transaction():
            conn.execute("DELETE FROM core.chain_params")
        assert set_chain(conn, "main") == "main" and recorded(conn) == ("main", 210_000)
        assert subsidy_and_epoch(conn, heights) == mainnet


def test_a_second_chain_is_refused_over_stored_blocks(db_url):
    with psycopg.connect(db_url) as conn:
        assert set_chain(conn, "regtest") == "regtest"
        assert set_chain(conn, "regtest") == "regtest"  # again: nothing changes
        assert set_chain(conn, "signet") == "signet"  # no blocks stored yet: the record may still change
        assert set_chain(conn, "regtest") == "regtest"
        insert_blocks(conn, blocks(range(0, 3)))
        for other in ("main", "signet", "test"):
            with pytest.raises(psycopg.Error) as info:
                set_chain(conn, other)
            assert info.value.sqlstate == "MQ003"
            assert f"holds blocks of chain regtest but the node is on chain {other}" in str(info.value)
        assert recorded(conn) == ("regtest", 150)
        with pytest.raises(psycopg.Error) as info:
            set_chain(conn, "bogus")
        assert info.value.sqlstate == "MQ002"


def test_blocks_without_a_recorded_chain_are_mainnet(db_url):
    with psycopg.connect(db_url) as conn:
        insert_blocks(conn, blocks(range(0, 3)))  # as every database before chain parameters were recorded
        with pytest.raises(psycopg.Error) as info:
            set_chain(conn, "regtest")
        assert info.value.sqlstate == "MQ003" and "chain main (no chain recorded)" in str(info.value)
        assert recorded(conn) is None
        assert set_chain(conn, "main") == "main" and recorded(conn) == ("main", 210_000)


@pytest.fixture
def regtest_sim():
    chain = SimChain(txs_per_block=3, network="regtest")
    chain.add_synthetic(160, 0)
    server = SimNodeServer(chain, rpc_user="u", rpc_password="p").start()
    yield server
    server.stop()


def test_the_loader_records_the_nodes_chain_and_refuses_another(db_url, regtest_sim):
    """The listener reads getblockchaininfo.chain (sim-node --chain regtest) before its first block."""
    rpc = BitcoinRpc(RpcConfig(regtest_sim.url, "u", "p", retries=0))
    last_block = datetime.fromtimestamp(regtest_sim.chain.tip.time, UTC)
    with psycopg.connect(db_url) as conn:
        ChainListener(conn, rpc, IngestOptions(batch_blocks=40), clock=lambda: last_block).sync_once()
        assert recorded(conn) == ("regtest", 150)
        rows = conn.execute(
            "SELECT height, max_subsidy_sat, subsidy_sat FROM core.btc_primitive_block"
            " WHERE height IN (149, 150, 159) ORDER BY height"
        ).fetchall()
        assert rows == [(149, 50 * BTC, 50 * BTC), (150, 25 * BTC, 25 * BTC), (159, 25 * BTC, 25 * BTC)]
        (epochs,) = conn.execute(
            "SELECT array_agg(DISTINCT halving_epoch ORDER BY halving_epoch) FROM core.btc_primitive_10m"
        ).fetchone()
        assert epochs == [0, 1]
        conn.commit()

        mainnet = SimChain(txs_per_block=3)
        mainnet.add_synthetic(3, 0)
        main_node = SimNodeServer(mainnet, rpc_user="u", rpc_password="p").start()
        try:
            main_rpc = BitcoinRpc(RpcConfig(main_node.url, "u", "p", retries=0))
            with pytest.raises(psycopg.Error) as info:
                chain_sync.ingest_range(conn, main_rpc, 160, 162, IngestOptions())
            assert info.value.sqlstate == "MQ003"
            assert "holds blocks of chain regtest but the node is on chain main" in str(info.value)
        finally:
            main_node.stop()
        (count,) = conn.execute("SELECT count(*) FROM raw.btc_blocks_raw").fetchone()
        assert count == 160 and recorded(conn) == ("regtest", 150)
