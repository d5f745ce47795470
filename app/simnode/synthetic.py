"""Deterministic synthetic modern blocks: thousands of transactions, segwit mix, skewed feerates, halvings.

Everything about a block is a function of its key (seed, branch, height), so a block can be regenerated
when it is rendered instead of being kept in memory. Transaction bytes are random (the right length),
amounts are consistent to the satoshi: every input total = outputs + fee, coinbase = subsidy + fees.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from app.simnode.rawblock import TxSizes, merkle_root, script_asm, script_type, varint_size

DEFAULT_START_TIME = 1713571200  # 2024-04-20T00:00:00Z, the block-840000 halving day
DEFAULT_BITS = 0x17034219
WITNESS_COMMITMENT_PREFIX = bytes.fromhex("6a24aa21a9ed")


# Blocks between subsidy halvings per network, as getblockchaininfo names it (Core's consensus params).
HALVING_INTERVAL = {"main": 210_000, "test": 210_000, "testnet4": 210_000, "signet": 210_000, "regtest": 150}


def subsidy_sat(height: int, halving_interval: int = HALVING_INTERVAL["main"]) -> int:
    halvings = height // halving_interval
    return 0 if halvings >= 64 else 5_000_000_000 >> halvings


@dataclass(frozen=True)
class SynthTx(TxSizes):
    txid: str
    wtxid: str
    size: int
    base_size: int
    segwit: bool
    inputs: tuple[tuple[str, int, int, int, bytes], ...]  # prev txid, vout, value, height, script
    outputs: tuple[tuple[int, bytes], ...]
    fee: int | None
    coinbase_script: bytes | None
    raw_hex: str


@dataclass(frozen=True)
class Body:
    txs: list[SynthTx]
    block_size: int
    stripped_size: int


def _hash_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _script(rng: random.Random, kind: int) -> bytes:
    if kind == 0:
        return b"\x00\x14" + rng.randbytes(20)  # p2wpkh
    if kind == 1:
        return b"\x51\x20" + rng.randbytes(32)  # p2tr
    if kind == 2:
        return b"\xa9\x14" + rng.randbytes(20) + b"\x87"  # p2sh
    return b"\x76\xa9\x14" + rng.randbytes(20) + b"\x88\xac"  # p2pkh


def block_spacing(key: str) -> int:
    """Seconds since the parent: exponential with mean 600."""
    return 1 + int(random.Random(f"{key}:spacing").expovariate(1 / 600))


def generate_body(key: str, height: int, n_tx: int, halving_interval: int = HALVING_INTERVAL["main"]) -> Body:
    rng = random.Random(key)
    n_tx = max(1, n_tx + rng.randint(-n_tx // 10, n_tx // 10))
    txs: list[SynthTx] = []
    total_fee = 0
    for i in range(1, n_tx):
        segwit = rng.random() < 0.75
        n_in = rng.choice((1, 1, 1, 2, 2, 3, 4))
        n_out = rng.choice((1, 2, 2, 2, 3))
        outputs = []
        for _ in range(n_out):
            value = min(int(rng.lognormvariate(14.0, 2.5)) + 546, 2_000_000_000_000)
            outputs.append((value, _script(rng, rng.choice((0, 0, 1, 2)) if segwit else rng.choice((2, 3)))))
        out_bytes = sum(9 + len(s) for _, s in outputs)
        if segwit:
            base = 4 + varint_size(n_in) + 41 * n_in + varint_size(n_out) + out_bytes + 4
            size = base + 2 + 108 * n_in
        else:
            base = size = 4 + varint_size(n_in) + 148 * n_in + varint_size(n_out) + out_bytes + 4
        vsize = (base * 3 + size + 3) // 4
        feerate = min(500.0, max(1.0, rng.lognormvariate(2.3, 1.1)))
        fee = int(feerate * vsize)
        total_in = sum(v for v, _ in outputs) + fee
        cuts = sorted(rng.randint(1, total_in - 1) for _ in range(n_in - 1)) if total_in > n_in else []
        values = [b - a for a, b in zip([0, *cuts], [*cuts, total_in], strict=True)]
        if any(v <= 0 for v in values):
            values = [total_in - (n_in - 1)] + [1] * (n_in - 1)
        inputs = tuple(
            (
                _hash_hex(f"{key}:prev:{i}:{k}"),
                rng.randint(0, 3),
                values[k],
                max(0, height - 1 - rng.randint(0, 5000)),
                _script(rng, 0 if segwit else 3),
            )
            for k in range(n_in)
        )
        txs.append(
            SynthTx(
                txid=_hash_hex(f"{key}:tx:{i}"),
                wtxid=_hash_hex(f"{key}:wtx:{i}") if segwit else _hash_hex(f"{key}:tx:{i}"),
                size=size,
                base_size=base,
                segwit=segwit,
                inputs=inputs,
                outputs=tuple(outputs),
                fee=fee,
                coinbase_script=None,
                raw_hex=rng.randbytes(size).hex(),
            )
        )
        total_fee += fee

    coinbase_script = bytes([3]) + (height & 0xFFFFFF).to_bytes(3, "little") + rng.randbytes(8)
    reward = subsidy_sat(height, halving_interval) + total_fee
    cb_outputs = ((reward, _script(rng, 0)), (0, WITNESS_COMMITMENT_PREFIX + rng.randbytes(32)))
    cb_out_bytes = sum(9 + len(s) for _, s in cb_outputs)
    cb_base = 4 + 1 + 36 + 1 + len(coinbase_script) + 4 + 1 + cb_out_bytes + 4
    cb_size = cb_base + 2 + 1 + 1 + 32
    coinbase = SynthTx(
        txid=_hash_hex(f"{key}:tx:0"),
        wtxid="0" * 64,
        size=cb_size,
        base_size=cb_base,
        segwit=True,
        inputs=(),
        outputs=cb_outputs,
        fee=None,
        coinbase_script=coinbase_script,
        raw_hex=rng.randbytes(cb_size).hex(),
    )
    txs.insert(0, coinbase)
    header_and_count = 80 + varint_size(len(txs))
    return Body(txs, header_and_count + sum(t.size for t in txs), header_and_count + sum(t.base_size for t in txs))


def body_merkle_root(body: Body) -> str:
    return merkle_root([t.txid for t in body.txs])


def _spk(script: bytes) -> dict[str, Any]:
    return {"asm": script_asm(script), "hex": script.hex(), "type": script_type(script)}


def render_txs(body: Body, verbosity: int) -> list[dict[str, Any]]:
    from app.simnode.chain import Amount

    rendered = []
    for tx in body.txs:
        if tx.coinbase_script is not None:
            vin = [{"coinbase": tx.coinbase_script.hex(), "txinwitness": ["00" * 32], "sequence": 4294967295}]
        else:
            vin = []
            for prev_txid, vout, value, prev_height, script in tx.inputs:
                entry: dict[str, Any] = {"txid": prev_txid, "vout": vout, "scriptSig": {"asm": "", "hex": ""}}
                if tx.segwit:
                    entry["txinwitness"] = ["30" * 36, "02" + "11" * 32]
                if verbosity >= 3:
                    entry["prevout"] = {
                        "generated": False,
                        "height": prev_height,
                        "value": Amount(value),
                        "scriptPubKey": _spk(script),
                    }
                entry["sequence"] = 4294967293
                vin.append(entry)
        item: dict[str, Any] = {
            "txid": tx.txid,
            "hash": tx.wtxid if tx.coinbase_script is None else tx.txid,
            "version": 2,
            "size": tx.size,
            "vsize": tx.vsize,
            "weight": tx.weight,
            "locktime": 0,
            "vin": vin,
            "vout": [{"value": Amount(v), "n": n, "scriptPubKey": _spk(s)} for n, (v, s) in enumerate(tx.outputs)],
        }
        if tx.fee is not None:
            item["fee"] = Amount(tx.fee)
        item["hex"] = tx.raw_hex
        rendered.append(item)
    return rendered


def raw_block_hex(header_hex: str, body: Body) -> str:
    count = len(body.txs)
    varint = count.to_bytes(1, "little") if count < 0xFD else b"\xfd" + count.to_bytes(2, "little")
    return header_hex + varint.hex() + "".join(t.raw_hex for t in body.txs)
