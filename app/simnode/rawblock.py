"""Bitcoin block and transaction deserialization into Bitcoin Core's getblock JSON shapes."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

BLOCK_MAGIC = bytes.fromhex("f9beb4d9")

OPCODE_NAMES = {
    0x00: "0",
    0x4F: "-1",
    0x61: "OP_NOP",
    0x63: "OP_IF",
    0x64: "OP_NOTIF",
    0x67: "OP_ELSE",
    0x68: "OP_ENDIF",
    0x69: "OP_VERIFY",
    0x6A: "OP_RETURN",
    0x75: "OP_DROP",
    0x76: "OP_DUP",
    0x7C: "OP_SWAP",
    0x82: "OP_SIZE",
    0x87: "OP_EQUAL",
    0x88: "OP_EQUALVERIFY",
    0xA6: "OP_RIPEMD160",
    0xA7: "OP_SHA1",
    0xA8: "OP_SHA256",
    0xA9: "OP_HASH160",
    0xAA: "OP_HASH256",
    0xAC: "OP_CHECKSIG",
    0xAD: "OP_CHECKSIGVERIFY",
    0xAE: "OP_CHECKMULTISIG",
    0xAF: "OP_CHECKMULTISIGVERIFY",
    0xB1: "OP_CHECKLOCKTIMEVERIFY",
    0xB2: "OP_CHECKSEQUENCEVERIFY",
}
OPCODE_NAMES.update({0x50 + n: str(n) for n in range(1, 17)})


def dsha256(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def display_hash(digest: bytes) -> str:
    """Bitcoin shows hashes byte-reversed."""
    return digest[::-1].hex()


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    first = data[offset]
    if first < 0xFD:
        return first, offset + 1
    if first == 0xFD:
        return struct.unpack_from("<H", data, offset + 1)[0], offset + 3
    if first == 0xFE:
        return struct.unpack_from("<I", data, offset + 1)[0], offset + 5
    return struct.unpack_from("<Q", data, offset + 1)[0], offset + 9


def varint_size(n: int) -> int:
    return 1 if n < 0xFD else 3 if n <= 0xFFFF else 5 if n <= 0xFFFFFFFF else 9


def script_asm(script: bytes) -> str:
    """Core-like disassembly: pushes as hex, opcodes by name."""
    parts = []
    i = 0
    while i < len(script):
        op = script[i]
        i += 1
        if 0x01 <= op <= 0x4B:
            parts.append(script[i : i + op].hex())
            i += op
        elif op in (0x4C, 0x4D, 0x4E):
            width = {0x4C: 1, 0x4D: 2, 0x4E: 4}[op]
            if i + width > len(script):
                parts.append("[error]")
                break
            n = int.from_bytes(script[i : i + width], "little")
            i += width
            parts.append(script[i : i + n].hex())
            i += n
        else:
            parts.append(OPCODE_NAMES.get(op, f"OP_UNKNOWN[{op}]"))
    return " ".join(parts)


def script_type(script: bytes) -> str:
    n = len(script)
    if n == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return "pubkeyhash"
    if n == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87:
        return "scripthash"
    if n == 22 and script[:2] == b"\x00\x14":
        return "witness_v0_keyhash"
    if n == 34 and script[:2] == b"\x00\x20":
        return "witness_v0_scripthash"
    if n == 34 and script[:2] == b"\x51\x20":
        return "witness_v1_taproot"
    if (n == 67 and script[0] == 0x41 or n == 35 and script[0] == 0x21) and script[-1] == 0xAC:
        return "pubkey"
    if n >= 1 and script[0] == 0x6A:
        return "nulldata"
    if n >= 37 and script[-1] == 0xAE and 0x51 <= script[0] <= 0x60 and 0x51 <= script[-2] <= 0x60:
        return "multisig"
    if 4 <= n <= 42 and (script[0] == 0 or 0x51 <= script[0] <= 0x60) and script[1] + 2 == n:
        return "witness_unknown"
    return "nonstandard"


class TxSizes:
    """weight and vsize from the serialized size with (size) and without (base_size) witness data."""

    size: int
    base_size: int

    @property
    def weight(self) -> int:
        return self.base_size * 3 + self.size

    @property
    def vsize(self) -> int:
        return (self.weight + 3) // 4


@dataclass
class RawTx(TxSizes):
    """One decoded transaction (amounts in satoshis)."""

    txid: str
    wtxid: str
    version: int
    locktime: int
    size: int
    base_size: int
    inputs: list[dict]  # {prev_txid, prev_vout, script_sig, sequence, witness: list[bytes]}
    outputs: list[tuple[int, bytes]]  # (value_sat, script_pubkey)
    raw: bytes

    @property
    def is_coinbase(self) -> bool:
        first = self.inputs[0]
        return len(self.inputs) == 1 and first["prev_txid"] == "0" * 64 and first["prev_vout"] == 0xFFFFFFFF


def parse_tx(data: bytes, offset: int) -> tuple[RawTx, int]:
    start = offset
    version = struct.unpack_from("<i", data, offset)[0]
    offset += 4
    segwit = data[offset] == 0 and data[offset + 1] != 0
    if segwit:
        offset += 2
    body_start = offset
    n_in, offset = read_varint(data, offset)
    inputs = []
    for _ in range(n_in):
        prev = data[offset : offset + 32]
        prev_vout = struct.unpack_from("<I", data, offset + 32)[0]
        offset += 36
        script_len, offset = read_varint(data, offset)
        script_sig = data[offset : offset + script_len]
        offset += script_len
        sequence = struct.unpack_from("<I", data, offset)[0]
        offset += 4
        inputs.append(
            {
                "prev_txid": display_hash(prev),
                "prev_vout": prev_vout,
                "script_sig": script_sig,
                "sequence": sequence,
                "witness": [],
            }
        )
    n_out, offset = read_varint(data, offset)
    outputs = []
    for _ in range(n_out):
        value = struct.unpack_from("<q", data, offset)[0]
        offset += 8
        script_len, offset = read_varint(data, offset)
        outputs.append((value, data[offset : offset + script_len]))
        offset += script_len
    body_end = offset
    if segwit:
        for inp in inputs:
            n_items, offset = read_varint(data, offset)
            for _ in range(n_items):
                item_len, offset = read_varint(data, offset)
                inp["witness"].append(data[offset : offset + item_len])
                offset += item_len
    locktime = struct.unpack_from("<I", data, offset)[0]
    offset += 4
    raw = data[start:offset]
    stripped = data[start : start + 4] + data[body_start:body_end] + data[offset - 4 : offset]
    txid = display_hash(dsha256(stripped))
    wtxid = display_hash(dsha256(raw)) if segwit else txid
    return RawTx(txid, wtxid, version, locktime, len(raw), len(stripped), inputs, outputs, raw), offset


@dataclass
class RawBlock:
    """A decoded block: header fields and transactions."""

    hash: str
    version: int
    prev_hash: str
    merkle_root: str
    time: int
    bits: int
    nonce: int
    txs: list[RawTx]
    raw: bytes
    header: bytes = field(repr=False, default=b"")

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def stripped_size(self) -> int:
        return 80 + varint_size(len(self.txs)) + sum(t.base_size for t in self.txs)

    @property
    def weight(self) -> int:
        return self.stripped_size * 3 + self.size

    def bip34_height(self) -> int | None:
        """Height pushed first in the coinbase script (BIP34, blocks >= 227931)."""
        script = self.txs[0].inputs[0]["script_sig"]
        if not script or not 1 <= script[0] <= 8 or len(script) < 1 + script[0]:
            return None
        return int.from_bytes(script[1 : 1 + script[0]], "little")


def parse_block(raw: bytes) -> RawBlock:
    header = raw[:80]
    version, prev, merkle, time_, bits, nonce = struct.unpack_from("<i32s32sIII", raw, 0)
    n_tx, offset = read_varint(raw, 80)
    txs = []
    for _ in range(n_tx):
        tx, offset = parse_tx(raw, offset)
        txs.append(tx)
    if offset != len(raw):
        raise ValueError(f"block has {len(raw) - offset} trailing bytes")
    return RawBlock(
        display_hash(dsha256(header)),
        version,
        display_hash(prev),
        display_hash(merkle),
        time_,
        bits,
        nonce,
        txs,
        raw,
        header,
    )


def iter_raw_blocks(data: bytes) -> Iterator[bytes]:
    """Blocks of a blk*.dat file (magic, u32le length, block), or one unframed raw block."""
    if data[:4] != BLOCK_MAGIC:
        yield data
        return
    offset = 0
    while offset + 8 <= len(data):
        if data[offset : offset + 4] != BLOCK_MAGIC:
            if data[offset : offset + 4] == b"\x00\x00\x00\x00":
                break  # zero padding at the end of a blk file
            raise ValueError(f"bad block magic at offset {offset}")
        length = struct.unpack_from("<I", data, offset + 4)[0]
        yield data[offset + 8 : offset + 8 + length]
        offset += 8 + length


def bits_to_target(bits: int) -> int:
    exponent = bits >> 24
    mantissa = bits & 0x007FFFFF
    return mantissa >> (8 * (3 - exponent)) if exponent <= 3 else mantissa << (8 * (exponent - 3))


def block_work(bits: int) -> int:
    target = bits_to_target(bits)
    return 0 if target <= 0 else (1 << 256) // (target + 1)


def difficulty(bits: int) -> float:
    """Bitcoin Core's GetDifficulty."""
    shift = (bits >> 24) & 0xFF
    diff = 0x0000FFFF / (bits & 0x00FFFFFF)
    while shift < 29:
        diff *= 256.0
        shift += 1
    while shift > 29:
        diff /= 256.0
        shift -= 1
    return diff


def merkle_root(txids: list[str]) -> str:
    level = [bytes.fromhex(t)[::-1] for t in txids]
    if not level:
        return "0" * 64
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [dsha256(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return display_hash(level[0])
