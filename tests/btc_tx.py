"""Just enough Bitcoin for building regtest chains in tests: keys, output scripts, transaction encoding.

Pure Python, standard library only. Signing is left to Bitcoin Core (``signrawtransactionwithkey`` and
``descriptorprocesspsbt``); this module only needs public keys, so its secp256k1 arithmetic is a plain
affine implementation (a few milliseconds per key, and a chain uses a few hundred keys).

- :class:`Key`: a private key with its compressed and x-only public keys, WIF (regtest/testnet), and the
  output scripts of every key type (P2PKH, P2SH-P2WPKH, P2WPKH, P2TR key path per BIP86).
- :func:`anyone_can_spend_p2wsh` / :func:`anyone_can_spend_p2tr`: script-path outputs that anyone can
  spend without a signature (witness script / tapleaf ``<tag> OP_DROP OP_TRUE``).
- :class:`Tx`: inputs, outputs, witnesses; serialization with and without witness, txid, vsize.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

# secp256k1
P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)
# BIP341's provably unspendable internal key (no known discrete log): forces script-path spending.
NUMS_X = 0x50929B74C1A04954B78B4B6035E97A5E078A5A0F28EC96D547BFEE9ACE803AC0

OP_0, OP_TRUE, OP_DROP, OP_RETURN = 0x00, 0x51, 0x75, 0x6A
OP_DUP, OP_HASH160, OP_EQUAL, OP_EQUALVERIFY, OP_CHECKSIG = 0x76, 0xA9, 0x87, 0x88, 0xAC
TAPSCRIPT_LEAF_VERSION = 0xC0


def _point_add(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    tangent = a == b
    lam = (3 * a[0] * a[0] if tangent else b[1] - a[1]) * pow(2 * a[1] if tangent else b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return x, (lam * (a[0] - x) - a[1]) % P


def _jacobian_double(p: tuple[int, int, int]) -> tuple[int, int, int]:
    x, y, z = p
    if y == 0:
        return 0, 0, 0
    ysq = y * y % P
    s = 4 * x * ysq % P
    m = 3 * x * x % P
    nx = (m * m - 2 * s) % P
    return nx, (m * (s - nx) - 8 * ysq * ysq) % P, 2 * y * z % P


def _jacobian_add(p: tuple[int, int, int], q: tuple[int, int, int]) -> tuple[int, int, int]:
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    z1sq, z2sq = p[2] * p[2] % P, q[2] * q[2] % P
    u1, u2 = p[0] * z2sq % P, q[0] * z1sq % P
    s1, s2 = p[1] * z2sq * q[2] % P, q[1] * z1sq * p[2] % P
    if u1 == u2:
        return _jacobian_double(p) if s1 == s2 else (0, 0, 0)
    h, r = u2 - u1, s2 - s1
    h2 = h * h % P
    h3 = h * h2 % P
    u1h2 = u1 * h2 % P
    nx = (r * r - h3 - 2 * u1h2) % P
    return nx, (r * (u1h2 - nx) - s1 * h3) % P, h * p[2] * q[2] % P


def point_mul(point: tuple[int, int] | None, scalar: int) -> tuple[int, int] | None:
    """scalar * point (Jacobian double-and-add, one inversion at the end)."""
    if point is None or scalar % N == 0:
        return None
    result = (0, 0, 0)
    addend = (point[0], point[1], 1)
    scalar %= N
    while scalar:
        if scalar & 1:
            result = _jacobian_add(result, addend)
        addend = _jacobian_double(addend)
        scalar >>= 1
    if result[2] == 0:
        return None
    zinv = pow(result[2], -1, P)
    return result[0] * zinv * zinv % P, result[1] * zinv * zinv * zinv % P


def lift_x(x: int) -> tuple[int, int]:
    """The point with x coordinate x and even y (BIP340)."""
    y_sq = (pow(x, 3, P) + 7) % P
    y = pow(y_sq, (P + 1) // 4, P)
    if y * y % P != y_sq:
        raise ValueError("x is not on the curve")
    return x, y if y % 2 == 0 else P - y


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def dsha256(data: bytes) -> bytes:
    return sha256(sha256(data))


def hash160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", sha256(data)).digest()


def tagged_hash(tag: str, data: bytes) -> bytes:
    tag_hash = sha256(tag.encode())
    return sha256(tag_hash + tag_hash + data)


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58check(payload: bytes) -> str:
    data = payload + dsha256(payload)[:4]
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rem = divmod(number, 58)
        out = _B58[rem] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def compact_size(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def push(data: bytes) -> bytes:
    """A minimal script push of data (up to 75 bytes is all the tests need, plus PUSHDATA1)."""
    if len(data) <= 75:
        return bytes([len(data)]) + data
    if len(data) <= 255:
        return b"\x4c" + bytes([len(data)]) + data
    raise ValueError("push longer than 255 bytes")


def op_return_script(data: bytes) -> bytes:
    return bytes([OP_RETURN]) + push(data)


@dataclass(frozen=True)
class Key:
    """A private key and the output scripts of every key type it can sign for."""

    secret: int

    @property
    def point(self) -> tuple[int, int]:
        return _pubkey_point(self.secret)

    @property
    def pubkey(self) -> bytes:
        x, y = self.point
        return bytes([2 + (y & 1)]) + x.to_bytes(32, "big")

    @property
    def xonly(self) -> bytes:
        return self.point[0].to_bytes(32, "big")

    def wif(self, testnet: bool = True) -> str:
        return base58check(bytes([0xEF if testnet else 0x80]) + self.secret.to_bytes(32, "big") + b"\x01")

    def p2pkh(self) -> bytes:
        return bytes([OP_DUP, OP_HASH160, 20]) + hash160(self.pubkey) + bytes([OP_EQUALVERIFY, OP_CHECKSIG])

    def p2wpkh(self) -> bytes:
        return bytes([OP_0, 20]) + hash160(self.pubkey)

    def p2sh_p2wpkh_redeem_script(self) -> bytes:
        return self.p2wpkh()

    def p2sh_p2wpkh(self) -> bytes:
        return bytes([OP_HASH160, 20]) + hash160(self.p2wpkh()) + bytes([OP_EQUAL])

    def p2tr(self) -> bytes:
        """BIP86 key-path output: internal key = this key, no script tree."""
        spk = _p2tr_cache.get(self.secret)
        if spk is None:
            spk = bytes([OP_TRUE, 32]) + taproot_output_key(self.point[0], b"")[0].to_bytes(32, "big")
            _p2tr_cache[self.secret] = spk
        return spk


_pubkey_cache: dict[int, tuple[int, int]] = {}
_p2tr_cache: dict[int, bytes] = {}


def _pubkey_point(secret: int) -> tuple[int, int]:
    point = _pubkey_cache.get(secret)
    if point is None:
        point = point_mul(G, secret)
        _pubkey_cache[secret] = point
    return point


def taproot_output_key(internal_x: int, merkle_root: bytes) -> tuple[int, int]:
    """(output key x, parity of its y) for an internal key and script-tree root (b"" = no tree)."""
    tweak = int.from_bytes(tagged_hash("TapTweak", internal_x.to_bytes(32, "big") + merkle_root), "big")
    q = _point_add(lift_x(internal_x), point_mul(G, tweak))
    return q[0], q[1] & 1


def anyone_can_spend_script(tag: bytes) -> bytes:
    """``<tag> OP_DROP OP_TRUE``: distinct scripts (and so distinct outputs) that need no signature."""
    return push(tag) + bytes([OP_DROP, OP_TRUE])


def anyone_can_spend_p2wsh(tag: bytes) -> tuple[bytes, list[bytes]]:
    """(scriptPubKey, spending witness) of a P2WSH output of the anyone-can-spend script."""
    script = anyone_can_spend_script(tag)
    return bytes([OP_0, 32]) + sha256(script), [script]


def anyone_can_spend_p2tr(tag: bytes) -> tuple[bytes, list[bytes]]:
    """(scriptPubKey, spending witness) of a P2TR output whose one tapleaf is the anyone-can-spend script.

    The internal key is BIP341's NUMS point, so the output can only be spent by the script path.
    """
    script = anyone_can_spend_script(tag)
    leaf = tagged_hash("TapLeaf", bytes([TAPSCRIPT_LEAF_VERSION]) + compact_size(len(script)) + script)
    qx, parity = taproot_output_key(NUMS_X, leaf)
    control = bytes([TAPSCRIPT_LEAF_VERSION | parity]) + NUMS_X.to_bytes(32, "big")
    return bytes([OP_TRUE, 32]) + qx.to_bytes(32, "big"), [script, control]


@dataclass
class TxIn:
    txid: str  # hex, display order
    vout: int
    script_sig: bytes = b""
    sequence: int = 0xFFFFFFFD
    witness: list[bytes] = field(default_factory=list)


@dataclass
class TxOut:
    value: int  # satoshis
    script_pubkey: bytes

    def serialize(self) -> bytes:
        return self.value.to_bytes(8, "little") + compact_size(len(self.script_pubkey)) + self.script_pubkey


@dataclass
class Tx:
    vin: list[TxIn] = field(default_factory=list)
    vout: list[TxOut] = field(default_factory=list)
    version: int = 2
    locktime: int = 0

    def serialize(self, with_witness: bool = True) -> bytes:
        has_witness = with_witness and any(i.witness for i in self.vin)
        out = [self.version.to_bytes(4, "little")]
        if has_witness:
            out.append(b"\x00\x01")
        out.append(compact_size(len(self.vin)))
        for i in self.vin:
            out.append(bytes.fromhex(i.txid)[::-1] + i.vout.to_bytes(4, "little"))
            out.append(compact_size(len(i.script_sig)) + i.script_sig + i.sequence.to_bytes(4, "little"))
        out.append(compact_size(len(self.vout)))
        out.extend(o.serialize() for o in self.vout)
        if has_witness:
            for i in self.vin:
                out.append(compact_size(len(i.witness)))
                out.extend(compact_size(len(item)) + item for item in i.witness)
        out.append(self.locktime.to_bytes(4, "little"))
        return b"".join(out)

    def hex(self) -> str:
        return self.serialize().hex()

    def txid(self) -> str:
        return dsha256(self.serialize(with_witness=False))[::-1].hex()

    def weight(self) -> int:
        return 3 * len(self.serialize(with_witness=False)) + len(self.serialize())

    def vsize(self) -> int:
        return (self.weight() + 3) // 4


def parse_tx(raw: bytes) -> Tx:
    """Inverse of Tx.serialize (Core's signed transactions come back as hex)."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        chunk = raw[pos : pos + n]
        if len(chunk) != n:
            raise ValueError("truncated transaction")
        pos += n
        return chunk

    def size() -> int:
        first = take(1)[0]
        if first < 0xFD:
            return first
        return int.from_bytes(take({0xFD: 2, 0xFE: 4, 0xFF: 8}[first]), "little")

    tx = Tx(version=int.from_bytes(take(4), "little"))
    segwit = raw[pos : pos + 2] == b"\x00\x01"
    if segwit:
        take(2)
    for _ in range(size()):
        txid = take(32)[::-1].hex()
        vout = int.from_bytes(take(4), "little")
        script_sig = take(size())
        tx.vin.append(TxIn(txid, vout, script_sig, int.from_bytes(take(4), "little")))
    for _ in range(size()):
        value = int.from_bytes(take(8), "little")
        tx.vout.append(TxOut(value, take(size())))
    if segwit:
        for txin in tx.vin:
            txin.witness = [take(size()) for _ in range(size())]
    tx.locktime = int.from_bytes(take(4), "little")
    if pos != len(raw):
        raise ValueError("trailing bytes after transaction")
    return tx
