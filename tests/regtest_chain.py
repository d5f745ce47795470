"""A realistic regtest chain built fast on a real Bitcoin Core, once per test session, copied per test.

The recipe (../shared/bin/PROVENANCE.md, "fast chains"): a node without a wallet; keys made in Python
(tests/btc_tx.py); transactions built in Python; key-type inputs signed by Core in batches
(``signrawtransactionwithkey``, and ``descriptorprocesspsbt`` for transactions with taproot key-path
inputs, which ``signrawtransactionwithkey`` cannot sign); anyone-can-spend script outputs (P2WSH and
P2TR script path) spent without signatures; each block mined with ``generateblock`` at a mock time.

What the default chain (:class:`ChainSpec`) holds, from a seeded RNG (the same seed gives the same
transactions; block hashes also depend on the base time, by default about 65 hours before now, so
the tip is about 3 hours old: the node is not in initial block download, and a test can mine some 25
more blocks 10 minutes apart before reaching Core's 2-hour limit on block times ahead of the clock):
- 101 blocks to mature the first coinbase, then ``tx_blocks`` blocks of transactions
  (>= 20,000 transactions in all);
- inputs and outputs of every type: legacy P2PKH, P2SH-P2WPKH, P2WPKH, P2TR key path, P2WSH and P2TR
  script path (anyone-can-spend); coinbases paying to each key type in turn;
- payments with change, batched payments (20-250 outputs), consolidations (15-80 inputs), coinbase
  fan-outs, OP_RETURN outputs; fee rates 1..200 sat/vB skewed towards the low end, versions 1 and 2;
- coinbases that pay the subsidy only: generateblock leaves the fees unclaimed;
- one block per 10-minute slot mostly, some slots with 2 or 3 blocks, some empty slots (gaps).
  MQNODE buckets a block by its median time past, which with rising header times is the header
  time of the block five below it, so the buckets repeat this pattern five heights later.

:class:`RegtestChain` is the built chain: a stopped datadir plus the builder's own ledger (every
transaction's fee, in block order, and counts by script type), an independent reference for tests.

Use: :func:`session_chain` (built once per test process, skips the test when no bitcoind is found),
:func:`running_node` (a started node on a private copy of it, stopped afterwards) and
:func:`run_backfill` (`mqnode btc backfill` as a subprocess against a node).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import hashlib
import math
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

from tests.bitcoind import BitcoinNode, RpcClient, copy_datadir, find_bitcoind
from tests.btc_tx import (
    Key,
    Tx,
    TxIn,
    TxOut,
    anyone_can_spend_p2tr,
    anyone_can_spend_p2wsh,
    compact_size,
    op_return_script,
    parse_tx,
)

KEY_KINDS = ("p2pkh", "p2sh_p2wpkh", "p2wpkh", "p2tr")
SCRIPT_KINDS = ("p2wsh_acs", "p2tr_acs")
KINDS = KEY_KINDS + SCRIPT_KINDS
COINBASE_MATURITY = 100
REGTEST_HALVING_INTERVAL = 150
SIGNING_CONNECTIONS = 2
SAT = Decimal(100_000_000)
ROOT = Path(__file__).resolve().parent.parent
MQNODE = str(Path(sys.executable).with_name("mqnode"))  # the console script, as a user runs it
# Signed sizes the fee estimate assumes per input: (bytes added to the scriptSig, witness bytes).
# ECDSA signatures are counted at 72 bytes + sighash byte (Core grinds to 71 or less), so actual
# fee rates land at or a little above the target.
INPUT_SIZES = {
    "p2pkh": (1 + 73 + 1 + 33, 0),
    "p2sh_p2wpkh": (23, 1 + 1 + 73 + 1 + 33),
    "p2wpkh": (0, 1 + 1 + 73 + 1 + 33),
    "p2tr": (0, 1 + 1 + 64),
}


def regtest_subsidy(height: int) -> int:
    halvings = height // REGTEST_HALVING_INTERVAL
    return 0 if halvings >= 64 else (50 * 100_000_000) >> halvings


@dataclass(frozen=True)
class ChainSpec:
    seed: int = 20260901
    tx_blocks: int = 200  # blocks with transactions after the maturity blocks
    min_block_txs: int = 30
    max_block_txs: int = 200
    keys_per_kind: int = 24
    scripts_per_kind: int = 16
    base_time: int | None = None  # header time of block 1's slot start; default: ~3 days before now


@dataclass
class Utxo:
    txid: str
    vout: int
    value: int
    kind: str
    spk: bytes
    key: Key | None = None
    witness: list[bytes] | None = None  # anyone-can-spend outputs: the spending witness


@dataclass(frozen=True)
class TxFacts:
    """One transaction as the builder made it (independent of Core's and MQNODE's accounts)."""

    txid: str
    fee: int  # sum of the inputs' values - sum of the outputs' values
    size: int
    vsize: int
    weight: int
    inputs: int
    outputs: int
    segwit: bool


@dataclass
class RegtestChain:
    """A built chain: a stopped datadir and the builder's ledger."""

    datadir: Path
    spec: ChainSpec
    tip_height: int
    first_tx_height: int
    block_times: dict[int, int]  # height -> header time
    txs: dict[int, list[TxFacts]]  # height -> every non-coinbase transaction, in block order
    coinbase_payouts: dict[int, int]  # height -> what the coinbase pays
    tx_count: int  # non-coinbase transactions
    input_kinds: Counter = field(default_factory=Counter)
    output_kinds: Counter = field(default_factory=Counter)
    op_return_outputs: int = 0
    build_seconds: float = 0.0

    def fees(self, height: int) -> list[int]:
        return [t.fee for t in self.txs.get(height, [])]

    def node(self, workdir: Path) -> BitcoinNode:
        """A node (not started) on a private copy of the chain."""
        return BitcoinNode(copy_datadir(self.datadir, Path(workdir) / "bitcoind"))


class ChainBuilder:
    """Builds the chain of a spec on a running node (see the module docstring)."""

    def __init__(self, node: BitcoinNode, spec: ChainSpec):
        self.node = node
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.keys = {
            kind: [Key(self.rng.randrange(1, 2**255)) for _ in range(spec.keys_per_kind)] for kind in KEY_KINDS
        }
        self.key_spks = {kind: [(key, getattr(key, kind)()) for key in keys] for kind, keys in self.keys.items()}
        self.scripts = {
            "p2wsh_acs": [anyone_can_spend_p2wsh(i.to_bytes(4, "big")) for i in range(spec.scripts_per_kind)],
            "p2tr_acs": [anyone_can_spend_p2tr(i.to_bytes(4, "big")) for i in range(spec.scripts_per_kind)],
        }
        self.utxos: dict[str, list[Utxo]] = {kind: [] for kind in KINDS}
        self.immature: list[tuple[int, Utxo]] = []  # (height, coinbase output)
        self.txs: dict[int, list[TxFacts]] = {}
        self.payouts: dict[int, int] = {}
        self.block_times: dict[int, int] = {}
        self.input_kinds: Counter = Counter()
        self.output_kinds: Counter = Counter()
        self.op_returns = 0
        self.tx_count = 0
        self.clients = [node.client() for _ in range(SIGNING_CONNECTIONS)]
        self.pool = ThreadPoolExecutor(SIGNING_CONNECTIONS, thread_name_prefix="sign")

    def close(self) -> None:
        self.pool.shutdown()
        for client in self.clients:
            client.close()

    # ----- outputs

    def new_output(self, kind: str, value: int) -> tuple[TxOut, Utxo]:
        if kind in KEY_KINDS:
            key, spk = self.rng.choice(self.key_spks[kind])
            return TxOut(value, spk), Utxo("", 0, value, kind, spk, key=key)
        spk, witness = self.rng.choice(self.scripts[kind])
        return TxOut(value, spk), Utxo("", 0, value, kind, spk, witness=witness)

    def random_kind(self) -> str:
        return self.rng.choices(KINDS, weights=(20, 18, 24, 22, 8, 8))[0]

    # ----- time schedule

    def schedule(self, blocks: int, base_time: int) -> list[int]:
        """Header times of heights 1..blocks: one block per 10-minute slot, some bursts and gaps."""
        times: list[int] = []
        slot = 0
        while len(times) < blocks:
            roll = self.rng.random()
            if roll < 0.05:
                slot += self.rng.randint(1, 6)  # empty slots before this one
            count = self.rng.choice((2, 2, 3)) if 0.05 <= roll < 0.11 else 1
            offsets = sorted(self.rng.sample(range(20, 580, 7), count))
            times.extend(base_time + slot * 600 + off for off in offsets)
            slot += 1
        return times[:blocks]

    # ----- transactions

    def take_inputs(self, count: int, allowed: tuple[str, ...]) -> list[Utxo]:
        taken: list[Utxo] = []
        for _ in range(count):
            kinds = [k for k in allowed if self.utxos[k]]
            if not kinds:
                break
            pool = self.utxos[self.rng.choices(kinds, weights=[len(self.utxos[k]) for k in kinds])[0]]
            i = self.rng.randrange(len(pool))
            pool[i], pool[-1] = pool[-1], pool[i]
            taken.append(pool.pop())
        return taken

    def feerate(self) -> float:
        return 1 + 199 * self.rng.random() ** 4

    def build_tx(self, inputs: list[Utxo], n_outputs: int, op_return: bool = False) -> tuple[Tx, list[Utxo], int]:
        tx = Tx(version=self.rng.choice((1, 2, 2, 2)))
        for u in inputs:
            script_sig = b""
            if u.kind == "p2sh_p2wpkh":
                script_sig = bytes([22]) + u.key.p2sh_p2wpkh_redeem_script()
            tx.vin.append(
                TxIn(u.txid, u.vout, script_sig, self.rng.choice((0xFFFFFFFF, 0xFFFFFFFD)), list(u.witness or []))
            )
        kinds = [self.random_kind() for _ in range(n_outputs)]
        drafts = [self.new_output(kind, 0) for kind in kinds]
        tx.vout = [d[0] for d in drafts]
        if op_return:
            tx.vout.insert(self.rng.randrange(len(tx.vout) + 1), TxOut(0, op_return_script(self.rng.randbytes(40))))
        # Fee from the estimated signed size.
        base = len(tx.serialize(with_witness=False)) - sum(len(i.script_sig) for i in tx.vin)
        witness = 0
        for u in inputs:
            if u.kind in INPUT_SIZES:
                sig_bytes, wit_bytes = INPUT_SIZES[u.kind]
                base += sig_bytes
                witness += wit_bytes
            else:
                witness += len(_witness_stack(u.witness))
        if witness:
            witness += 2 + sum(1 for u in inputs if u.kind == "p2pkh")  # marker, flag; empty witness counts
        vsize = math.ceil((4 * base + witness) / 4)
        fee = math.ceil(self.feerate() * vsize) + self.rng.randrange(vsize)
        total_in = sum(u.value for u in inputs)
        spendable = total_in - fee
        if spendable < 1000 * n_outputs:
            raise ValueError("inputs too small")
        # Split: a few large outputs and many small ones (payments) with the rest as change.
        weights = [self.rng.random() ** 2 + 0.01 for _ in range(n_outputs)]
        scale = (spendable - 1000 * n_outputs) / sum(weights)
        values = [1000 + int(w * scale) for w in weights]
        values[-1] += spendable - sum(values)
        outputs: list[Utxo] = []
        for (txout, utxo), value in zip(drafts, values, strict=True):
            txout.value = value
            utxo.value = value
            outputs.append(utxo)
        return tx, outputs, fee

    def block_transactions(self, height: int) -> list[tuple[Tx, list[Utxo], list[Utxo], int]]:
        """(unsigned tx, inputs, outputs, fee) for one block, spending only outputs of earlier blocks."""
        planned: list[tuple[Tx, list[Utxo], list[Utxo], int]] = []
        while self.immature and self.immature[0][0] <= height - COINBASE_MATURITY:
            _, coinbase = self.immature.pop(0)
            tx, outs, fee = self.build_tx([coinbase], self.rng.randint(60, 400))
            planned.append((tx, [coinbase], outs, fee))
        available = sum(len(p) for p in self.utxos.values())
        target = min(self.rng.randint(self.spec.min_block_txs, self.spec.max_block_txs), available // 3)
        while len(planned) < target:
            shape = self.rng.random()
            if self.rng.random() < 0.5:
                allowed = ("p2pkh", "p2sh_p2wpkh", "p2wpkh", "p2wsh_acs", "p2tr_acs")  # signrawtransactionwithkey
            else:
                allowed = ("p2sh_p2wpkh", "p2wpkh", "p2tr", "p2wsh_acs", "p2tr_acs")  # descriptorprocesspsbt
            op_return = False
            if shape < 0.05:  # consolidation
                n_in, n_out = self.rng.randint(10, 50), 1
            elif shape < 0.13:  # batched payment
                n_in, n_out = self.rng.randint(1, 3), self.rng.randint(20, 250)
            elif shape < 0.19:  # OP_RETURN with change
                n_in, n_out, op_return = 1, 1, True
            elif shape < 0.33:  # many to many
                n_in, n_out = self.rng.randint(2, 6), self.rng.randint(2, 6)
            else:  # payment with change
                n_in, n_out = self.rng.choice((1, 1, 1, 2, 3)), 2
            inputs = self.take_inputs(n_in, allowed)
            if not inputs:
                break
            try:
                tx, outs, fee = self.build_tx(inputs, n_out, op_return)
            except ValueError:
                try:
                    tx, outs, fee = self.build_tx(inputs, 1, op_return)
                except ValueError:
                    continue  # dust: dropped from the pool
            planned.append((tx, inputs, outs, fee))
        return planned

    # ----- signing

    def sign(self, planned: list[tuple[Tx, list[Utxo], list[Utxo], int]]) -> list[str]:
        calls: list[tuple] = []
        for tx, inputs, _, _ in planned:
            key_kinds = {u.kind for u in inputs if u.key is not None}
            if not key_kinds:
                calls.append(("__unsigned__", tx.hex()))
            elif "p2tr" in key_kinds:
                descriptors = sorted({_descriptor(u) for u in inputs if u.key is not None})
                calls.append(("descriptorprocesspsbt", _psbt(tx, inputs), descriptors, "DEFAULT", False, True))
            else:
                wifs = sorted({_wif(u.key) for u in inputs if u.key is not None})
                prevtxs = []
                for u in inputs:
                    prev = {"txid": u.txid, "vout": u.vout, "scriptPubKey": u.spk.hex(), "amount": str(u.value / SAT)}
                    if u.kind == "p2sh_p2wpkh":
                        prev["redeemScript"] = u.key.p2sh_p2wpkh_redeem_script().hex()
                    elif u.kind == "p2wsh_acs":
                        prev["witnessScript"] = u.witness[0].hex()
                    prevtxs.append(prev)
                calls.append(("signrawtransactionwithkey", tx.hex(), wifs, prevtxs))
        signed: list[str | None] = [c[1] if c[0] == "__unsigned__" else None for c in calls]
        rpc_calls = [(i, c) for i, c in enumerate(calls) if c[0] != "__unsigned__"]

        def run(client: RpcClient, part: list[tuple[int, tuple]]) -> None:
            for start in range(0, len(part), 100):
                chunk = part[start : start + 100]
                for (i, call), result in zip(chunk, client.batch([c for _, c in chunk]), strict=True):
                    if not result.get("complete"):
                        raise RuntimeError(f"{call[0]} left tx {i} incomplete: {result.get('errors')}")
                    signed[i] = result["hex"]

        # Core runs the calls of one batch one after another: two connections use two cores.
        futures = [
            self.pool.submit(run, client, rpc_calls[n :: len(self.clients)]) for n, client in enumerate(self.clients)
        ]
        for future in futures:
            future.result()
        return signed

    # ----- the chain

    def build(self) -> None:
        spec = self.spec
        blocks = COINBASE_MATURITY + 1 + spec.tx_blocks
        base = spec.base_time
        if base is None:
            base = (int(time.time()) // 600) * 600 - 600 * int(blocks * 1.25 + 12)
        times = self.schedule(blocks, base)
        for height in range(1, blocks + 1):
            planned = self.block_transactions(height) if height > COINBASE_MATURITY else []
            signed = self.sign(planned)
            coinbase_kind = KEY_KINDS[height % len(KEY_KINDS)]
            coinbase_out, coinbase_utxo = self.new_output(coinbase_kind, regtest_subsidy(height))
            coinbase_descriptor = f"raw({coinbase_out.script_pubkey.hex()})"
            block_hash = self.node.mine_block(signed, output=coinbase_descriptor, time=times[height - 1])
            txids = self.node.rpc("getblock", block_hash, 1)["tx"]
            if len(txids) != len(planned) + 1:
                raise RuntimeError(f"block {height}: {len(txids) - 1} transactions mined, {len(planned)} built")
            # generateblock's coinbase pays the subsidy only (it is made before the transactions are
            # added, so their fees go unclaimed): read what it pays.
            coinbase = self.node.rpc("getrawtransaction", txids[0], True, block_hash)
            coinbase_utxo.value = int(Decimal(coinbase["vout"][0]["value"]) * SAT)
            coinbase_utxo.txid = txids[0]
            self.payouts[height] = coinbase_utxo.value
            self.immature.append((height, coinbase_utxo))
            facts: list[TxFacts] = []
            for (_, inputs, outs, fee), raw, txid in zip(planned, signed, txids[1:], strict=True):
                tx = parse_tx(bytes.fromhex(raw))
                if tx.txid() != txid:
                    raise RuntimeError(f"block {height}: txid {txid} mined where {tx.txid()} was built")
                if sum(u.value for u in inputs) - sum(o.value for o in tx.vout) != fee:
                    raise RuntimeError(f"block {height}: tx {txid} does not pay the fee it was built with")
                segwit = any(i.witness for i in tx.vin)
                facts.append(
                    TxFacts(txid, fee, len(raw) // 2, tx.vsize(), tx.weight(), len(tx.vin), len(tx.vout), segwit)
                )
                self.input_kinds.update(u.kind for u in inputs)
                n = 0
                for vout, txout in enumerate(tx.vout):
                    if txout.script_pubkey[:1] == b"\x6a":
                        self.op_returns += 1
                        continue
                    utxo = outs[n]
                    n += 1
                    utxo.txid, utxo.vout = txid, vout
                    self.utxos[utxo.kind].append(utxo)
                    self.output_kinds[utxo.kind] += 1
            self.txs[height] = facts
            self.block_times[height] = times[height - 1]
            self.tx_count += len(planned)


def _witness_stack(items: list[bytes]) -> bytes:
    return compact_size(len(items)) + b"".join(compact_size(len(w)) + w for w in items)


@functools.cache
def _wif(key: Key) -> str:
    return key.wif()


def _descriptor(u: Utxo) -> str:
    wif = _wif(u.key)
    return {"p2sh_p2wpkh": f"sh(wpkh({wif}))", "p2wpkh": f"wpkh({wif})", "p2tr": f"tr({wif})"}[u.kind]


def _psbt(tx: Tx, inputs: list[Utxo]) -> str:
    """A BIP174 PSBT of the unsigned tx with every input's witness UTXO (taproot signatures commit to
    all of them) and, for anyone-can-spend inputs, the final witness."""

    def pair(key: bytes, value: bytes) -> bytes:
        return compact_size(len(key)) + key + compact_size(len(value)) + value

    unsigned = Tx([TxIn(i.txid, i.vout, b"", i.sequence) for i in tx.vin], tx.vout, tx.version, tx.locktime)
    out = [b"psbt\xff", pair(b"\x00", unsigned.serialize(with_witness=False)), b"\x00"]
    for u in inputs:
        out.append(pair(b"\x01", TxOut(u.value, u.spk).serialize()))
        if u.witness is not None:
            out.append(pair(b"\x08", _witness_stack(u.witness)))
        out.append(b"\x00")
    out.extend(b"\x00" for _ in tx.vout)
    return base64.b64encode(b"".join(out)).decode()


def build_chain(workdir: Path, spec: ChainSpec | None = None) -> RegtestChain:
    """Build a chain in workdir/chain (stopped when this returns)."""
    spec = spec or ChainSpec()
    started = time.monotonic()
    datadir = Path(workdir) / "chain"
    node = BitcoinNode(datadir)
    node.start()
    try:
        builder = ChainBuilder(node, spec)
        try:
            builder.build()
        finally:
            builder.close()
        tip = node.rpc("getblockcount")
    finally:
        node.stop()
    return RegtestChain(
        datadir=datadir,
        spec=spec,
        tip_height=tip,
        first_tx_height=COINBASE_MATURITY + 1,
        block_times=builder.block_times,
        txs=builder.txs,
        coinbase_payouts=builder.payouts,
        tx_count=builder.tx_count,
        input_kinds=builder.input_kinds,
        output_kinds=builder.output_kinds,
        op_return_outputs=builder.op_returns,
        build_seconds=time.monotonic() - started,
    )


def run_backfill(
    node: BitcoinNode, db_url: str, verbosity: int, *args: str, source: str = "json"
) -> subprocess.CompletedProcess:
    """`mqnode btc backfill --mode full --start-height 1 [args]` as a user runs it, through the node's cookie.

    ``source`` "rest" reads Core's REST raw blocks (MQNODE_BTC_BLOCK_SOURCE; the node needs -rest).

    Height 1 on: the regtest genesis is from 2011, and a timeline from there to now would be 15 years
    of empty 10m buckets (the genesis block counts in no flow anyway). Later arguments win.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQNODE_")}
    env.update(node.mqnode_env())
    env.update(
        MQNODE_DATABASE_URL=db_url,
        MQNODE_BTC_GETBLOCK_VERBOSITY=str(verbosity),
        MQNODE_BTC_BLOCK_SOURCE=source,
        MQNODE_LOG_LEVEL="WARNING",
    )
    cmd = [MQNODE, "btc", "backfill", "--mode", "full", "--start-height", "1", "--no-progress", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)


def require_bitcoind() -> None:
    path, reason = find_bitcoind()
    if path is None:
        pytest.skip(f"Bitcoin Core regtest tests need bitcoind: {reason}")


_session_chain: RegtestChain | None = None
CACHE_ENV = "MQNODE_TEST_CHAIN_CACHE"  # "0": always build; else a directory (default: the temp dir)
CACHE_MAX_AGE_SEC = 6 * 3600  # a cached chain's tip stays well inside Core's 24 h "recent tip" window


def session_chain() -> RegtestChain:
    """The default chain, built on first use and kept for the rest of the process.

    Skips the calling test when no bitcoind is found. A chain built less than 6 hours ago by the same
    builder source, spec and bitcoind binary is reused from an on-disk cache (``$TMPDIR/mqnode-regtest-
    chains``, or the directory in ``MQNODE_TEST_CHAIN_CACHE``; ``0`` turns the cache off and builds;
    under CI, set, it is off unless that variable names a directory).
    Test modules wrap it in a session fixture::

        @pytest.fixture(scope="session")
        def chain() -> RegtestChain:
            return session_chain()
    """
    global _session_chain
    require_bitcoind()
    if _session_chain is None:
        setting = os.environ.get(CACHE_ENV, "")
        if setting == "0" or (not setting and os.environ.get("CI")):  # CI proves that a fresh build works
            workdir = Path(tempfile.mkdtemp(prefix="mqnode-regtest-chain-"))
            atexit.register(shutil.rmtree, workdir, True)
            _session_chain = build_chain(workdir)
        else:
            cache = Path(setting) if setting else Path(tempfile.gettempdir()) / "mqnode-regtest-chains"
            _session_chain = cached_chain(cache, ChainSpec())
    return _session_chain


def cache_key(spec: ChainSpec) -> str:
    bitcoind, _ = find_bitcoind()
    digest = hashlib.sha256(repr(spec).encode())
    stat = bitcoind.stat()
    digest.update(f"{bitcoind.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for source in ("btc_tx.py", "bitcoind.py", "regtest_chain.py"):
        digest.update((Path(__file__).parent / source).read_bytes())
    return digest.hexdigest()[:20]


def cached_chain(cache: Path, spec: ChainSpec) -> RegtestChain:
    """The chain of ``spec`` from the cache when fresh there, else built and stored (atomically)."""
    cache.mkdir(parents=True, exist_ok=True)
    entry = cache / cache_key(spec)
    for old in cache.iterdir():  # expired entries and builds that died half-way
        if old != entry and time.time() - old.stat().st_mtime > CACHE_MAX_AGE_SEC:
            shutil.rmtree(old, ignore_errors=True)
    meta = entry / "chain.pickle"
    if meta.exists() and time.time() - meta.stat().st_mtime < CACHE_MAX_AGE_SEC:
        chain = pickle.loads(meta.read_bytes())
        chain.datadir = entry / "chain"
        return chain
    building = Path(tempfile.mkdtemp(prefix=f"{entry.name}.building-", dir=cache))
    chain = build_chain(building, spec)
    (building / "chain.pickle").write_bytes(pickle.dumps(chain))
    if meta.exists() or entry.exists():
        shutil.rmtree(entry, ignore_errors=True)  # expired (or another process's; ours is as good)
    try:
        building.rename(entry)
    except OSError:  # another process stored the same chain meanwhile: keep ours for this run
        atexit.register(shutil.rmtree, building, True)
        return chain
    chain.datadir = entry / "chain"
    return chain


@contextlib.contextmanager
def running_node(chain: RegtestChain, workdir: Path, extra_args: Sequence[str] = ()) -> Iterator[BitcoinNode]:
    """A started node on a private copy of the chain; stopped (killed if it hangs) on exit."""
    node = chain.node(workdir).start(list(extra_args))
    try:
        yield node
    finally:
        try:
            node.stop()
        except RuntimeError:
            node.kill()
