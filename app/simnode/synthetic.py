"""Deterministic synthetic modern blocks: thousands of transactions, segwit mix, skewed feerates, halvings,
and inputs that spend real earlier outputs of the same chain (realistic ages).

A block's structure is a function of its key (seed, branch, height) and of the chain below it: each input
draws a coin age from a mix of young (minutes, hours) and old (days to years) spends, and spends an unspent
output of the ancestor block that old (or one near it). What the choice needs (each block's output values
and script kinds, which outputs its branch has spent) is kept compactly (array module) per block by
sim-node's chain (chain.py), which builds blocks in height order; the bytes (txids, scripts, raw hex) are
derived from hashes of the key when a block is rendered. Amounts are consistent to the satoshi: inputs =
outputs + fee for every transaction, coinbase = subsidy + fees, every output spent at most once, by its own
branch. A chain starting above height 0 with nothing below it also spends coins of its unserved past
("pre-history", outpoints named by hash at heights below the start): old coins from its first block on, as a
real chain has; a chain from genesis has only its own outputs (its first blocks fan out from the coinbases,
spending outputs of the same block). Coinbase maturity is not enforced.
"""

from __future__ import annotations

import hashlib
import math
import random
from array import array
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any

from app.simnode.rawblock import merkle_root, script_asm, script_type, varint_size

DEFAULT_START_TIME = 1713571200  # 2024-04-20T00:00:00Z, the block-840000 halving day
DEFAULT_BITS = 0x17034219
DEFAULT_SPACING = 600  # mean seconds between blocks
WITNESS_COMMITMENT_PREFIX = bytes.fromhex("6a24aa21a9ed")
DUST = 546

# Blocks between subsidy halvings per network, as getblockchaininfo names it (Core's consensus params).
HALVING_INTERVAL = {"main": 210_000, "test": 210_000, "testnet4": 210_000, "signet": 210_000, "regtest": 150}

# The age an input's coin has: (share, shortest, longest seconds), log-uniform within a class.
DAY = 86_400
AGE_MIX = (
    (0.25, 600, 3_600),
    (0.20, 3_600, DAY),
    (0.20, DAY, 7 * DAY),
    (0.15, 7 * DAY, 30 * DAY),
    (0.10, 30 * DAY, 180 * DAY),
    (0.10, 180 * DAY, 8 * 365 * DAY),
)
_AGE_CUMULATIVE = tuple(sum(c[0] for c in AGE_MIX[: i + 1]) for i in range(len(AGE_MIX)))
# Draws of a coin age for a transaction's first input (a chain from genesis has no coin older than itself;
# a draw older than the chain, or at exhausted blocks, misses: the transaction is not made after this many).
FIRST_INPUT_TRIES = 3
PROBE_BLOCKS = 2  # an exhausted target block: the nearest blocks with an unspent output, this far each way
# Inputs and outputs per transaction (1-4 and 1-3, two of each on average). A chain from genesis has no older
# coins to spend: its transactions take fewer inputs (1.6) and make more outputs (2.2), so its UTXO set grows.
IN_COUNTS = (1, 1, 1, 2, 2, 3, 4)
OUT_COUNTS = (1, 2, 2, 2, 3)
IN_COUNTS_GROWING = (1, 1, 1, 1, 2, 2, 3)
OUT_COUNTS_GROWING = (1, 2, 2, 2, 3, 3)
# A share of outputs is held: never spent (the UTXO set keeps coins of every age, as long-term holders do).
HELD_SHARE = 0.2
HELD = 2  # BlockData.spent: 0 unspent (spendable by later blocks), 1 spent or unspendable, 2 held
KIND_COMMITMENT = 4  # out_kind of the coinbase's witness commitment (OP_RETURN: never in the UTXO set)


def subsidy_sat(height: int, halving_interval: int = HALVING_INTERVAL["main"]) -> int:
    halvings = height // halving_interval
    return 0 if halvings >= 64 else 5_000_000_000 >> halvings


def block_spacing(key: str, mean: int = DEFAULT_SPACING) -> int:
    """Seconds since the parent: exponential with mean `mean` (600 as on mainnet)."""
    return 1 + int(random.Random(f"{key}:spacing").expovariate(1 / mean))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _hash_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def script_of(kind: int, digest: bytes) -> bytes:
    if kind == 0:
        return b"\x00\x14" + digest[:20]  # p2wpkh
    if kind == 1:
        return b"\x51\x20" + digest  # p2tr
    if kind == 2:
        return b"\xa9\x14" + digest[:20] + b"\x87"  # p2sh
    if kind == 3:
        return b"\x76\xa9\x14" + digest[:20] + b"\x88\xac"  # p2pkh
    return WITNESS_COMMITMENT_PREFIX + digest


_SCRIPT_LEN = (22, 34, 23, 25, 38)


@dataclass
class BlockData:
    """One synthetic block's transactions, compactly: per tx, per input (the spent output), per output.

    Inputs: in_height = the spent output's block height, in_index = its index among that block's outputs in
    order (-1: a pre-history coin, named by hash), in_value its value. `spent` / `unspent` are the state of
    the active chain: which of this block's outputs its descendants on the active chain have spent (1) or
    may still spend (0: `unspent` counts them; 2: held, never spent).
    """

    key: str
    height: int
    tx_in: array  # 'i', n_tx + 1: first input of each tx
    tx_out: array  # 'i', n_tx + 1: first output of each tx
    segwit: bytearray
    size: array  # 'i'
    base: array  # 'i'
    fee: array  # 'q' (coinbase: 0)
    in_height: array  # 'i'
    in_index: array  # 'i'
    in_value: array  # 'q'
    out_value: array  # 'q'
    out_kind: bytearray
    spent: bytearray
    unspent: int = 0
    first: int = 0  # the first height of the synthetic segment the block is on
    prehistory: bool = False  # the segment spends coins from below its first height

    @property
    def n_tx(self) -> int:
        return len(self.tx_out) - 1

    @property
    def block_size(self) -> int:
        return 80 + varint_size(self.n_tx) + sum(self.size)

    @property
    def stripped_size(self) -> int:
        return 80 + varint_size(self.n_tx) + sum(self.base)

    def txid(self, i: int) -> str:
        return _hash_hex(f"{self.key}:tx:{i}")

    def outpoint(self, index: int) -> tuple[str, int]:
        i = bisect_right(self.tx_out, index) - 1
        return self.txid(i), index - self.tx_out[i]

    def script(self, index: int) -> bytes:
        i = bisect_right(self.tx_out, index) - 1
        return script_of(self.out_kind[index], _digest(f"{self.key}:spk:{i}:{index - self.tx_out[i]}"))

    def coinbase_script(self) -> bytes:
        return bytes([3]) + (self.height & 0xFFFFFF).to_bytes(3, "little") + _digest(f"{self.key}:cb")[:8]

    def merkle_root(self) -> str:
        return merkle_root([self.txid(i) for i in range(self.n_tx)])


class Spender:
    """The coins a new block at `height` can spend: the active chain's synthetic blocks from `first` (the
    segment's first block; a genesis block's outputs never enter the UTXO set), or pre-history coins."""

    def __init__(
        self, height: int, first: int, prehistory: bool, spacing: int, pool: int, source: Callable[[int], BlockData]
    ):
        self.height = height
        self.pool = pool  # unspent outputs of the active chain's synthetic blocks
        self.taken = 0  # outputs of earlier blocks this block spent
        self.first = first
        self.lowest = first + 1 if first == 0 else first
        self.prehistory = prehistory
        self.spacing = spacing
        self.source = source

    def age_blocks(self, rng: random.Random) -> int:
        u = rng.random()
        index = next((i for i, c in enumerate(_AGE_CUMULATIVE) if u < c), len(AGE_MIX) - 1)
        _, shortest, longest = AGE_MIX[index]
        seconds = math.exp(rng.uniform(math.log(shortest), math.log(longest)))
        return max(1, int(seconds / self.spacing))

    def pick(self, rng: random.Random) -> tuple[int, int, int] | None:
        """(height, output index, value) of an unspent output, now marked spent; index -1: a pre-history coin
        (value drawn); None: the drawn age is older than the chain, or nothing is unspent near it (a young
        chain from genesis spends fewer coins than it makes, so its UTXO set grows and ages)."""
        target = self.height - self.age_blocks(rng)
        if target < self.lowest:
            return self._prehistoric(rng, target) if self.prehistory else None
        data = self.source(target)
        s = target
        if not data.unspent:
            near = chain(
                range(target - 1, max(self.lowest, target - PROBE_BLOCKS) - 1, -1),
                range(target + 1, min(self.height - 1, target + PROBE_BLOCKS) + 1),
            )
            for s in near:
                data = self.source(s)
                if data.unspent:
                    break
            else:
                return self._prehistoric(rng, target) if self.prehistory else None
        start = rng.randrange(len(data.spent))
        j = data.spent.find(0, start)
        if j < 0:
            j = data.spent.find(0, 0, start)
        data.spent[j] = 1
        data.unspent -= 1
        self.taken += 1
        return s, j, data.out_value[j]

    def _prehistoric(self, rng: random.Random, target: int) -> tuple[int, int, int]:
        height = target if 0 <= target < self.first else rng.randrange(self.first)
        return height, -1, min(int(rng.lognormvariate(14.0, 2.5)) + DUST, 2_000_000_000_000)


def _output_kind(rng: random.Random, segwit: bool) -> int:
    return rng.choice((0, 0, 1, 2)) if segwit else rng.choice((2, 3))


def _tx_sizes(segwit: bool, n_in: int, kinds: list[int]) -> tuple[int, int, int]:
    out_bytes = sum(9 + _SCRIPT_LEN[k] for k in kinds)
    n_out = len(kinds)
    if segwit:
        base = 4 + varint_size(n_in) + 41 * n_in + varint_size(n_out) + out_bytes + 4
        size = base + 2 + 108 * n_in
    else:
        base = size = 4 + varint_size(n_in) + 148 * n_in + varint_size(n_out) + out_bytes + 4
    return base, size, (base * 3 + size + 3) // 4


def generate_block(
    key: str, height: int, n_tx: int, spender: Spender, halving_interval: int = HALVING_INTERVAL["main"]
) -> BlockData:
    """Build the block and mark the outputs it spends in their blocks' `spent` (chain.py undoes it on a
    disconnect). A chain from genesis short of coins (fewer unspent than four inputs per transaction) fans
    out: one-input transactions of 2-8 outputs, half of which the block's later transactions spend."""
    rng = random.Random(key)
    n_tx = max(1, n_tx + rng.randint(-n_tx // 10, n_tx // 10))
    data = BlockData(
        key,
        height,
        array("i", [0, 0]),
        array("i", [0]),
        bytearray(b"\x01"),
        array("i"),
        array("i"),
        array("q", [0]),
        array("i"),
        array("i"),
        array("q"),
        array("q"),
        bytearray(),
        bytearray(),
    )
    scarce = not spender.prehistory and spender.pool < n_tx
    own: list[int] = []  # this block's outputs its later transactions may spend (fan-out)
    # the coinbase's two outputs come first (indices 0, 1); their values are set at the end
    data.out_value.extend((0, 0))
    data.out_kind.extend((0, KIND_COMMITMENT))
    data.spent.extend(b"\x00\x01")
    data.tx_out.append(2)
    total_fee = 0
    for _ in range(1, n_tx):
        segwit = rng.random() < 0.75
        if scarce:
            n_in, n_out = 1, rng.choice((2, 3, 3, 4, 5, 8))
        else:
            growing = not spender.prehistory
            n_in = rng.choice(IN_COUNTS_GROWING if growing else IN_COUNTS)
            n_out = rng.choice(OUT_COUNTS_GROWING if growing else OUT_COUNTS)
        kinds = [_output_kind(rng, segwit) for _ in range(n_out)]
        inputs: list[tuple[int, int, int]] = []
        _take(spender, rng, data, own, inputs, FIRST_INPUT_TRIES)
        if not inputs:
            continue
        for _ in range(n_in - 1):
            _take(spender, rng, data, own, inputs, 1)
        base, size, vsize = _tx_sizes(segwit, len(inputs), kinds)
        feerate = min(500.0, max(1.0, rng.lognormvariate(2.3, 1.1)))
        fee = int(feerate * vsize)
        total_in = sum(c[2] for c in inputs)
        # too little for the fee and dust-free outputs: one more coin
        while total_in < fee + DUST * n_out and len(inputs) < 16 and _take(spender, rng, data, own, inputs, 4):
            base, size, vsize = _tx_sizes(segwit, len(inputs), kinds)
            fee = int(feerate * vsize)
            total_in = sum(c[2] for c in inputs)
        if total_in < fee + DUST * n_out:  # still too little: one output, what is left after the fee
            kinds = kinds[:1]
            n_out = 1
            base, size, vsize = _tx_sizes(segwit, len(inputs), kinds)
            fee = max(0, min(fee, total_in - DUST))
        values = _split(rng, total_in - fee, n_out)
        first_out = len(data.out_value)
        for value, kind in zip(values, kinds, strict=True):
            data.out_value.append(value)
            data.out_kind.append(kind)
            data.spent.append(HELD if rng.random() < HELD_SHARE else 0)
        if scarce:
            own.extend(j for j in range(first_out, first_out + n_out) if not data.spent[j] and rng.random() < 0.5)
        for coin in inputs:
            data.in_height.append(coin[0])
            data.in_index.append(coin[1])
            data.in_value.append(coin[2])
        data.tx_in.append(len(data.in_height))
        data.tx_out.append(len(data.out_value))
        data.segwit.append(segwit)
        data.size.append(size)
        data.base.append(base)
        data.fee.append(fee)
        total_fee += fee
    data.out_value[0] = subsidy_sat(height, halving_interval) + total_fee
    cb_base = 4 + 1 + 36 + 1 + 12 + 4 + 1 + (9 + _SCRIPT_LEN[0]) + (9 + _SCRIPT_LEN[KIND_COMMITMENT]) + 4
    data.size.insert(0, cb_base + 2 + 1 + 1 + 32)
    data.base.insert(0, cb_base)
    if height == 0:  # the genesis coinbase never enters the UTXO set
        data.spent = bytearray(b"\x01" * len(data.spent))
    data.unspent = data.spent.count(0)
    return data


def _take(spender: Spender, rng: random.Random, data: BlockData, own: list[int], inputs: list, tries: int) -> bool:
    """One more input: a coin of the chain (or pre-history) in up to `tries` draws of its age, else one of this
    block's fan-out outputs."""
    coin = None
    for _ in range(tries):
        coin = spender.pick(rng)
        if coin is not None:
            break
    if coin is None and own:
        j = own.pop(rng.randrange(len(own)))
        data.spent[j] = 1
        coin = (data.height, j, data.out_value[j])
    if coin is None:
        return False
    inputs.append(coin)
    return True


def _split(rng: random.Random, available: int, n_out: int) -> list[int]:
    """n_out output values summing to `available` (each >= dust when it allows): payments drawn as before
    (lognormal around 0.012 BTC), the last output the change."""
    if n_out == 1:
        return [available]
    payments = [min(int(rng.lognormvariate(14.0, 2.5)) + DUST, 2_000_000_000_000) for _ in range(n_out - 1)]
    if sum(payments) + DUST <= available:
        return [*payments, available - sum(payments)]
    spare = available - DUST * n_out
    cuts = sorted(rng.randint(0, spare) for _ in range(n_out - 1))
    return [DUST + b - a for a, b in zip([0, *cuts], [*cuts, spare], strict=True)]


def _spk(script: bytes) -> dict[str, Any]:
    return {"asm": script_asm(script), "hex": script.hex(), "type": script_type(script)}


def render_txs(data: BlockData, verbosity: int, ancestor: Callable[[int], BlockData]) -> list[dict[str, Any]]:
    """getblock's tx array; ancestor(h): the block at height h this block's branch spends from."""
    from app.simnode.chain import Amount

    raw_rng = random.Random(f"{data.key}:raw")
    rendered = []
    for i in range(data.n_tx):
        size = data.size[i]
        weight = data.base[i] * 3 + size
        txid = data.txid(i)
        if i == 0:
            vin: list[dict[str, Any]] = [
                {"coinbase": data.coinbase_script().hex(), "txinwitness": ["00" * 32], "sequence": 4294967295}
            ]
        else:
            vin = []
            segwit = data.segwit[i]
            for k in range(data.tx_in[i], data.tx_in[i + 1]):
                height, index = data.in_height[k], data.in_index[k]
                if index < 0:
                    prev_txid = _hash_hex(f"{data.key}:prev:{k}")
                    vout = _digest(f"{data.key}:prevn:{k}")[0] % 4
                    script = script_of(0 if segwit else 3, _digest(f"{data.key}:prevspk:{k}"))
                    generated = False
                else:
                    source = data if height == data.height else ancestor(height)
                    prev_txid, vout = source.outpoint(index)
                    script = source.script(index)
                    generated = index == 0
                entry: dict[str, Any] = {"txid": prev_txid, "vout": vout, "scriptSig": {"asm": "", "hex": ""}}
                if segwit:
                    entry["txinwitness"] = ["30" * 36, "02" + "11" * 32]
                if verbosity >= 3:
                    entry["prevout"] = {
                        "generated": generated,
                        "height": height,
                        "value": Amount(data.in_value[k]),
                        "scriptPubKey": _spk(script),
                    }
                entry["sequence"] = 4294967293
                vin.append(entry)
        first = data.tx_out[i]
        item: dict[str, Any] = {
            "txid": txid,
            "hash": txid if i == 0 or not data.segwit[i] else _hash_hex(f"{data.key}:wtx:{i}"),
            "version": 2,
            "size": size,
            "vsize": (weight + 3) // 4,
            "weight": weight,
            "locktime": 0,
            "vin": vin,
            "vout": [
                {"value": Amount(data.out_value[j]), "n": j - first, "scriptPubKey": _spk(data.script(j))}
                for j in range(first, data.tx_out[i + 1])
            ],
        }
        if i > 0:
            item["fee"] = Amount(data.fee[i])
        item["hex"] = raw_rng.randbytes(size).hex()
        rendered.append(item)
    return rendered


def raw_block_hex(header_hex: str, data: BlockData) -> str:
    raw_rng = random.Random(f"{data.key}:raw")
    count = data.n_tx
    varint = count.to_bytes(1, "little") if count < 0xFD else b"\xfd" + count.to_bytes(2, "little")
    return header_hex + varint.hex() + "".join(raw_rng.randbytes(data.size[i]).hex() for i in range(count))
