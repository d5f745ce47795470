"""A regtest chain from the real Bitcoin Core whose transactions spend coins of many ages (minutes to a year).

Built fast, without signatures: every coinbase and every output pays an anyone-can-spend P2WSH script
(tests/btc_tx.py), spent with its witness; some transactions add OP_RETURN outputs (with and without
value: burned, never in the UTXO set) and chain on an output of the same block (age 0). The block times
start about 400 days before now: 110 blocks 10 minutes apart (coinbase maturity), then gaps from minutes
to months, so spends are younger than an hour, hours, days, months and over 155 days old, and the tip is
about 3 hours old. :func:`build_branch` continues a chain from any height with its own seed (a reorg's
winning branch). The chain is built once per test session; tests copy its datadir.
"""

from __future__ import annotations

import atexit
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.bitcoind import BitcoinNode
from tests.btc_tx import Tx, TxIn, TxOut, anyone_can_spend_p2wsh, op_return_script
from tests.regtest_chain import require_bitcoind

MATURITY = 100
SPAN_DAYS = 400
SCRIPTS = [anyone_can_spend_p2wsh(i.to_bytes(2, "big")) for i in range(8)]


@dataclass
class Coin:
    txid: str
    vout: int
    value: int
    height: int
    time: int
    script: int  # index into SCRIPTS
    coinbase: bool = False


@dataclass
class OldCoinChain:
    datadir: Path
    tip_height: int
    pool: list[Coin] = field(default_factory=list)  # unspent coins after the tip (builder's view)
    pools: dict[int, list[Coin]] = field(default_factory=dict)  # the pool after each height
    times: dict[int, int] = field(default_factory=dict)

    def node(self, workdir: Path) -> BitcoinNode:
        target = Path(workdir) / "bitcoind"
        shutil.copytree(self.datadir, target, ignore=shutil.ignore_patterns(".cookie", ".lock", "debug.log"))
        return BitcoinNode(target)


def schedule(rng: random.Random, start: int, end: int, count: int) -> list[int]:
    """count increasing block times in (start, end]: mostly minutes apart, some hours, days and months."""
    gaps = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.35:
            gaps.append(rng.randint(60, 1500))  # minutes: young spends
        elif roll < 0.6:
            gaps.append(rng.randint(3600, 6 * 3600))
        elif roll < 0.85:
            gaps.append(rng.randint(86400, 10 * 86400))
        else:
            gaps.append(rng.randint(20 * 86400, 60 * 86400))
    scale = (end - start) / sum(gaps)
    times, t = [], start
    for gap in gaps:
        t += max(60, int(gap * scale))
        times.append(t)
    return times


def block_txs(rng: random.Random, pool: list[Coin], height: int, block_time: int) -> tuple[list[Tx], list[Coin]]:
    """Transactions for one block spending coins of the pool (mature coinbases, any others); the new coins."""
    spendable = [c for c in pool if not c.coinbase or height - c.height >= MATURITY]
    txs: list[Tx] = []
    created: list[Coin] = []
    for _ in range(rng.randint(1, 6)):
        if not spendable:
            break
        # Half the picks among the most recent coins (young spends), half anywhere (old coins).
        spendable.sort(key=lambda c: c.height)
        picks = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            if not spendable:
                break
            i = (
                rng.randrange(max(0, len(spendable) - 8), len(spendable))
                if rng.random() < 0.5
                else rng.randrange(len(spendable))
            )
            picks.append(spendable.pop(i))
        total = sum(c.value for c in picks)
        fee = 200 + rng.randrange(2000)
        if total - fee < 2000:
            continue
        tx = Tx(vin=[TxIn(c.txid, c.vout, b"", 0xFFFFFFFD, list(SCRIPTS[c.script][1])) for c in picks])
        n_out = rng.choice((1, 2, 2, 3))
        rest = total - fee
        values = []
        for _ in range(n_out - 1):
            v = rng.randint(1000, max(1000, rest // 2))
            values.append(v)
            rest -= v
        values.append(rest)
        scripts = [rng.randrange(len(SCRIPTS)) for _ in values]
        tx.vout = [TxOut(v, SCRIPTS[s][0]) for v, s in zip(values, scripts, strict=True)]
        if rng.random() < 0.2:  # OP_RETURN: with a burned value or none
            burn = rng.choice((0, 0, 500))
            if tx.vout[-1].value > burn + 1000:
                tx.vout[-1].value -= burn
                tx.vout.append(TxOut(burn, op_return_script(rng.randbytes(20))))
        for c in picks:
            pool.remove(c)
        txid = tx.txid()
        for n, out in enumerate(tx.vout):
            if out.script_pubkey[:1] == b"\x6a":
                continue
            coin = Coin(txid, n, out.value, height, block_time, scripts[n])
            created.append(coin)
            pool.append(coin)
            if rng.random() < 0.15:
                spendable.append(coin)  # may be spent again in this block: age 0
        txs.append(tx)
    return txs, created


def build_branch(
    node: BitcoinNode,
    pool: list[Coin],
    start_height: int,
    times: list[int],
    seed: int,
    pools: dict[int, list[Coin]] | None = None,
) -> list[Coin]:
    """Mine len(times) blocks from start_height on (the node's tip must be start_height - 1)."""
    rng = random.Random(seed)
    pool = list(pool)
    for offset, block_time in enumerate(times):
        height = start_height + offset
        txs = block_txs(rng, pool, height, block_time) if height > MATURITY else ([], [])
        script = rng.randrange(len(SCRIPTS))
        block_hash = node.mine_block(
            [t.hex() for t in txs[0]], output=f"raw({SCRIPTS[script][0].hex()})", time=block_time
        )
        coinbase = node.rpc("getblock", block_hash, 2)["tx"][0]
        value = int(round(float(coinbase["vout"][0]["value"]) * 1e8))
        pool.append(Coin(coinbase["txid"], 0, value, height, block_time, script, coinbase=True))
        if pools is not None:
            pools[height] = list(pool)
    return pool


def build(workdir: Path, blocks: int = 320, seed: int = 12) -> OldCoinChain:
    datadir = Path(workdir) / "chain"
    node = BitcoinNode(datadir)
    node.start()
    try:
        now = int(time.time())
        start = now - SPAN_DAYS * 86400
        rng = random.Random(seed)
        times = [start + 600 * (i + 1) for i in range(110)]
        times += schedule(rng, times[-1], now - 3 * 3600, blocks - 110)
        pools: dict[int, list[Coin]] = {}
        pool = build_branch(node, [], 1, times, seed, pools)
        tip = node.rpc("getblockcount")
    finally:
        node.stop()
    return OldCoinChain(datadir, tip, pool, pools, {h: t for h, t in enumerate(times, start=1)})


_chain: OldCoinChain | None = None


def session_old_coin_chain() -> OldCoinChain:
    """The chain, built on first use in this process (skips the test without bitcoind)."""
    global _chain
    require_bitcoind()
    if _chain is None:
        workdir = Path(tempfile.mkdtemp(prefix="mqnode-old-coins-"))
        atexit.register(shutil.rmtree, workdir, True)
        _chain = build(workdir)
    return _chain
