"""sim-node's chain: blocks by height and hash, Core-shaped JSON rendering, UTXO-based fees, mining, reorgs.

Three kinds of block share one record type:
- recorded: a getblock verbosity-2 JSON file served as recorded (confirmations/nextblockhash recomputed);
- raw: a real serialized block, decoded; fees and prevouts come from a UTXO map kept while connecting
  blocks contiguous from genesis (unknown prevouts -> no `fee`, like a node without undo data);
- synthetic: generated deterministically from (seed, branch, height) and the chain below (synthetic.py):
  inputs spend earlier outputs of the block's own branch; kept as compact arrays, bytes derived when rendered.
"""

from __future__ import annotations

import json
import re
import statistics
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.simnode import synthetic
from app.simnode.rawblock import (
    RawBlock,
    block_work,
    difficulty,
    display_hash,
    dsha256,
    iter_raw_blocks,
    parse_block,
    script_asm,
    script_type,
)


class RpcFailure(Exception):
    """A JSON-RPC error as Core reports it."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Amount:
    """Satoshis rendered the way Core renders amounts: a JSON number with exactly 8 decimals."""

    __slots__ = ("sats",)

    def __init__(self, sats: int):
        self.sats = sats


_NUMBER_MARK = re.compile(r'"@@N:([-0-9.Ee+]+)@@"')


def _encode_number(value: Any) -> str:
    if isinstance(value, Amount):
        sign = "-" if value.sats < 0 else ""
        sats = abs(value.sats)
        return f"@@N:{sign}{sats // 100_000_000}.{sats % 100_000_000:08d}@@"
    if isinstance(value, Decimal):
        return f"@@N:{value:f}@@"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(obj: Any) -> str:
    """json.dumps that writes Amount/Decimal as exact JSON numbers (never through float)."""
    return _NUMBER_MARK.sub(r"\1", json.dumps(obj, default=_encode_number, separators=(",", ":")))


@dataclass
class SimBlock:
    height: int
    hash: str
    prev_hash: str | None
    version: int
    merkle_root: str
    time: int
    bits: int
    nonce: int
    n_tx: int
    size: int
    stripped_size: int
    weight: int
    kind: str  # recorded | raw | synthetic
    payload: Any = None
    mediantime: int = 0
    chainwork: int = 0
    fees: list[int | None] = field(default_factory=list, repr=False)
    prevouts: list[list[dict] | None] = field(default_factory=list, repr=False)
    recorded_difficulty: Any = None
    recorded_chainwork: str | None = None

    @property
    def bits_hex(self) -> str:
        return f"{self.bits:08x}"

    @property
    def difficulty(self) -> Any:
        return self.recorded_difficulty if self.recorded_difficulty is not None else difficulty(self.bits)

    @property
    def chainwork_hex(self) -> str:
        return self.recorded_chainwork or f"{self.chainwork:064x}"

    def header_hex(self) -> str:
        import struct

        header = struct.pack(
            "<i32s32sIII",
            self.version,
            bytes.fromhex(self.prev_hash or "0" * 64)[::-1],
            bytes.fromhex(self.merkle_root)[::-1],
            self.time,
            self.bits,
            self.nonce,
        )
        return header.hex()


def _vout_json(n: int, value: int, script: bytes) -> dict:
    return {
        "value": Amount(value),
        "n": n,
        "scriptPubKey": {"asm": script_asm(script), "hex": script.hex(), "type": script_type(script)},
    }


def raw_tx_json(tx, fee: int | None, prevouts: list[dict] | None, verbosity: int) -> dict:
    vin = []
    for i, inp in enumerate(tx.inputs):
        if tx.is_coinbase:
            entry: dict[str, Any] = {"coinbase": inp["script_sig"].hex()}
        else:
            entry = {
                "txid": inp["prev_txid"],
                "vout": inp["prev_vout"],
                "scriptSig": {"asm": script_asm(inp["script_sig"]), "hex": inp["script_sig"].hex()},
            }
        if inp["witness"]:
            entry["txinwitness"] = [w.hex() for w in inp["witness"]]
        if verbosity >= 3 and prevouts is not None and not tx.is_coinbase:
            entry["prevout"] = prevouts[i]
        entry["sequence"] = inp["sequence"]
        vin.append(entry)
    out: dict[str, Any] = {
        "txid": tx.txid,
        "hash": tx.wtxid,
        "version": tx.version,
        "size": tx.size,
        "vsize": tx.vsize,
        "weight": tx.weight,
        "locktime": tx.locktime,
        "vin": vin,
        "vout": [_vout_json(n, v, s) for n, (v, s) in enumerate(tx.outputs)],
    }
    if fee is not None and not tx.is_coinbase:
        out["fee"] = Amount(fee)
    out["hex"] = tx.raw.hex()
    return out


class SimChain:
    """The node's block store. All public methods are safe to call from several threads."""

    def __init__(
        self,
        seed: int = 1,
        txs_per_block: int = 2500,
        cache_blocks: int = 256,
        network: str = "main",
        render_dir: Path | None = None,
        spacing: int = synthetic.DEFAULT_SPACING,
    ):
        if network not in synthetic.HALVING_INTERVAL:
            raise ValueError(f"unknown network {network!r}: one of {', '.join(synthetic.HALVING_INTERVAL)}")
        self.network = network  # getblockchaininfo.chain; synthetic blocks follow its subsidy schedule
        self.halving_interval = synthetic.HALVING_INTERVAL[network]
        self.seed = seed
        self.txs_per_block = txs_per_block
        self.spacing = spacing  # mean seconds between synthetic blocks (their coin ages are drawn in seconds)
        self._pool = 0  # unspent outputs of the active chain's synthetic blocks (a chain from genesis fans out below)
        self.by_height: dict[int, SimBlock] = {}
        self.by_hash: dict[str, SimBlock] = {}
        self.lock = threading.RLock()
        self.utxo: dict[tuple[str, int], tuple[int, bytes, int, bool]] = {}
        self.branch = 0
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._cache_blocks = cache_blocks
        # Rendered getblock texts also kept as files here (benchmarks: a month of synthetic blocks is
        # rendered once, then served at file speed to every loader run); None: memory only.
        self.render_dir = Path(render_dir) if render_dir is not None else None
        self.hex_files: dict[str, Path] = {}

    # ---- building the chain -------------------------------------------------------------------
    @property
    def tip_height(self) -> int:
        with self.lock:
            if not self.by_height:
                raise RpcFailure(-1, "no blocks loaded")
            return max(self.by_height)

    @property
    def tip(self) -> SimBlock:
        return self.by_height[self.tip_height]

    def _connect(self, block: SimBlock) -> None:
        parent = self.by_hash.get(block.prev_hash) if block.prev_hash else None
        if parent is not None and block.recorded_chainwork is None:
            block.chainwork = parent.chainwork + block_work(block.bits)
        elif block.recorded_chainwork is None:
            block.chainwork = block_work(block.bits) * (block.height + 1)
        else:
            block.chainwork = int(block.recorded_chainwork, 16)
        if not block.mediantime:
            times = [block.time]
            for h in range(block.height - 1, block.height - 11, -1):
                ancestor = self.by_height.get(h)
                if ancestor is None:
                    break
                times.append(ancestor.time)
            times.sort()
            block.mediantime = times[len(times) // 2]
        self.by_height[block.height] = block
        self.by_hash[block.hash] = block

    def add_recorded(self, path: Path) -> SimBlock:
        """A getblock verbosity-2 JSON file (a sibling <hash>.hex, if any, serves verbosity 0)."""
        data = json.loads(path.read_text(), parse_float=Decimal)
        with self.lock:
            block = SimBlock(
                height=data["height"],
                hash=data["hash"],
                prev_hash=data.get("previousblockhash"),
                version=data["version"],
                merkle_root=data["merkleroot"],
                time=data["time"],
                bits=int(data["bits"], 16),
                nonce=data["nonce"],
                n_tx=len(data["tx"]),
                size=data["size"],
                stripped_size=data.get("strippedsize", data["size"]),
                weight=data.get("weight", 4 * data["size"]),
                kind="recorded",
                payload=data,
                mediantime=data.get("mediantime", 0),
                recorded_difficulty=data.get("difficulty"),
                recorded_chainwork=data.get("chainwork"),
            )
            hex_file = path.with_name(f"{block.hash}.hex")
            if hex_file.exists():
                self.hex_files[block.hash] = hex_file
            self._connect(block)
            return block

    def add_raw(self, raw: bytes, height: int | None = None) -> SimBlock:
        """A serialized block: height from its parent, from BIP34, or given."""
        decoded = parse_block(raw)
        with self.lock:
            parent = self.by_hash.get(decoded.prev_hash)
            if height is None:
                if parent is not None:
                    height = parent.height + 1
                elif decoded.prev_hash == "0" * 64:
                    height = 0
                else:
                    height = decoded.bip34_height()
                    if height is None:
                        raise ValueError(f"height of block {decoded.hash} unknown: give FILE@HEIGHT")
            fees, prevouts = self._spend(decoded, height)
            block = SimBlock(
                height=height,
                hash=decoded.hash,
                prev_hash=None if height == 0 else decoded.prev_hash,
                version=decoded.version,
                merkle_root=decoded.merkle_root,
                time=decoded.time,
                bits=decoded.bits,
                nonce=decoded.nonce,
                n_tx=len(decoded.txs),
                size=decoded.size,
                stripped_size=decoded.stripped_size,
                weight=decoded.weight,
                kind="raw",
                payload=decoded,
                fees=fees,
                prevouts=prevouts,
            )
            self._connect(block)
            return block

    def _spend(self, decoded: RawBlock, height: int) -> tuple[list[int | None], list[list[dict] | None]]:
        fees: list[int | None] = []
        prevouts: list[list[dict] | None] = []
        for tx in decoded.txs:
            if tx.is_coinbase:
                fees.append(None)
                prevouts.append(None)
            else:
                spent = [self.utxo.pop((i["prev_txid"], i["prev_vout"]), None) for i in tx.inputs]
                if all(s is not None for s in spent):
                    fees.append(sum(s[0] for s in spent) - sum(v for v, _ in tx.outputs))
                    prevouts.append(
                        [
                            {
                                "generated": s[3],
                                "height": s[2],
                                "value": Amount(s[0]),
                                "scriptPubKey": {"asm": script_asm(s[1]), "hex": s[1].hex(), "type": script_type(s[1])},
                            }
                            for s in spent
                        ]
                    )
                else:
                    fees.append(None)
                    prevouts.append(None)
            if height > 0:  # the genesis coinbase never enters the UTXO set
                for n, (value, script) in enumerate(tx.outputs):
                    self.utxo[(tx.txid, n)] = (value, script, height, tx.is_coinbase)
        return fees, prevouts

    def add_raw_file(self, path: Path, height: int | None = None) -> int:
        count = 0
        for raw in iter_raw_blocks(path.read_bytes()):
            self.add_raw(raw, height if count == 0 else None)
            count += 1
        return count

    def add_synthetic(
        self,
        count: int,
        start_height: int | None = None,
        start_time: int | None = None,
        txs_per_block: int | None = None,
    ) -> list[str]:
        """count synthetic blocks on top of the tip (or from start_height when the chain is empty)."""
        hashes = []
        with self.lock:
            for _ in range(count):
                parent = self.by_height.get(max(self.by_height)) if self.by_height else None
                height = parent.height + 1 if parent else (start_height or 0)
                block = self._make_synthetic(height, parent, start_time, txs_per_block)
                self._connect(block)
                hashes.append(block.hash)
        return hashes

    def add_synthetic_until(
        self, until: int, start_height: int | None = None, start_time: int | None = None, limit: int = 1_000_000
    ) -> list[str]:
        """Synthetic blocks on top of the tip (or from start_height) while their time is <= until (unix s)."""
        hashes = []
        with self.lock:
            for _ in range(limit):
                parent = self.by_height.get(max(self.by_height)) if self.by_height else None
                height = parent.height + 1 if parent else (start_height or 0)
                block = self._make_synthetic(height, parent, start_time, None)
                if block.time > until:
                    self._undo_spends(block)
                    break
                self._connect(block)
                hashes.append(block.hash)
        return hashes

    def _make_synthetic(
        self,
        height: int,
        parent: SimBlock | None,
        start_time: int | None,
        txs_per_block: int | None,
        branch: int | None = None,
    ) -> SimBlock:
        branch = self.branch if branch is None else branch
        key = f"{self.seed}:{branch}:{height}"
        n_tx = txs_per_block or self.txs_per_block
        if parent is not None:
            spacing = synthetic.block_spacing(key, self.spacing)
            block_time = max(parent.time + spacing, parent.mediantime + 1)
            bits = parent.bits
            prev_hash = parent.hash
        else:
            block_time = start_time if start_time is not None else synthetic.DEFAULT_START_TIME
            bits = synthetic.DEFAULT_BITS
            prev_hash = None if height == 0 else display_hash(dsha256(f"parent-of:{key}".encode()))
        if parent is not None and parent.kind == "synthetic":
            first, prehistory = parent.payload.first, parent.payload.prehistory
        else:  # a new segment: from nothing (above genesis: with a pre-history) or on recorded / raw blocks
            first, prehistory, self._pool = height, parent is None and height > 0, 0
        spender = synthetic.Spender(
            height, first, prehistory, self.spacing, self._pool, lambda h: self.by_height[h].payload
        )
        body = synthetic.generate_block(key, height, n_tx, spender, self.halving_interval)
        body.first, body.prehistory = first, prehistory
        self._pool += body.unspent - spender.taken
        merkle = body.merkle_root()
        nonce = int.from_bytes(dsha256(key.encode())[:4], "little")
        block = SimBlock(
            height=height,
            hash="",
            prev_hash=prev_hash,
            version=0x20000000,
            merkle_root=merkle,
            time=block_time,
            bits=bits,
            nonce=nonce,
            n_tx=body.n_tx,
            size=body.block_size,
            stripped_size=body.stripped_size,
            weight=body.stripped_size * 3 + body.block_size,
            kind="synthetic",
            payload=body,
        )
        block.hash = display_hash(dsha256(bytes.fromhex(block.header_hex())))
        return block

    def _undo_spends(self, block: SimBlock) -> None:
        """The active tip's synthetic block leaves (or never joins) the chain: its spent outputs are unspent
        again in their blocks (its ancestors, still on the active chain)."""
        data = block.payload
        for height, index in zip(data.in_height, data.in_index, strict=True):
            if index >= 0 and height != data.height:
                source = self.by_height[height].payload
                source.spent[index] = 0
                source.unspent += 1
                self._pool += 1
        self._pool -= data.unspent

    def mine(self, n: int = 1, now: int | None = None) -> list[str]:
        """Mine n synthetic blocks on the tip, with block time = max(now, parent time + 1)."""
        hashes = []
        with self.lock:
            for _ in range(n):
                parent = self.tip
                block = self._make_synthetic(parent.height + 1, parent, None, None)
                wall = int(now if now is not None else time.time())
                block.time = max(wall, parent.time + 1, parent.mediantime + 1)
                block.hash = display_hash(dsha256(bytes.fromhex(block.header_hex())))
                self._connect(block)
                hashes.append(block.hash)
        return hashes

    def reorg(self, depth: int, extra: int = 1) -> list[str]:
        """Disconnect the top `depth` blocks and connect depth + extra new synthetic blocks from the fork."""
        with self.lock:
            tip = self.tip_height
            if depth < 1 or depth > tip - min(self.by_height):
                raise RpcFailure(-8, f"reorg depth {depth} out of range")
            for h in range(tip, tip - depth, -1):
                if self.by_height[h].kind == "synthetic":
                    self._undo_spends(self.by_height[h])
                del self.by_height[h]  # stays in by_hash: a stale block (confirmations -1)
            self.branch += 1
            self._cache.clear()
            hashes = []
            for _ in range(depth + extra):
                parent = self.tip
                block = self._make_synthetic(parent.height + 1, parent, None, None)
                self._connect(block)
                hashes.append(block.hash)
            return hashes

    # ---- rendering ---------------------------------------------------------------------------
    def lookup(self, block_hash: str) -> SimBlock:
        if not isinstance(block_hash, str) or len(block_hash) != 64:
            raise RpcFailure(-8, f"blockhash must be of length 64 (not {len(str(block_hash))}, for '{block_hash}')")
        block = self.by_hash.get(block_hash)
        if block is None:
            raise RpcFailure(-5, "Block not found")
        return block

    def _on_active_chain(self, block: SimBlock) -> bool:
        return self.by_height.get(block.height) is block

    def header_fields(self, block: SimBlock) -> dict[str, Any]:
        active = self._on_active_chain(block)
        fields: dict[str, Any] = {
            "hash": block.hash,
            "confirmations": self.tip_height - block.height + 1 if active else -1,
            "height": block.height,
            "version": block.version,
            "versionHex": f"{block.version & 0xFFFFFFFF:08x}",
            "merkleroot": block.merkle_root,
            "time": block.time,
            "mediantime": block.mediantime,
            "nonce": block.nonce,
            "bits": block.bits_hex,
            "difficulty": block.difficulty,
            "chainwork": block.chainwork_hex,
            "nTx": block.n_tx,
        }
        if block.prev_hash:
            fields["previousblockhash"] = block.prev_hash
        nxt = self.by_height.get(block.height + 1) if active else None
        if nxt is not None and nxt.prev_hash == block.hash:
            fields["nextblockhash"] = nxt.hash
        return fields

    def block_header(self, block_hash: str, verbose: bool = True) -> Any:
        with self.lock:
            block = self.lookup(block_hash)
            if not verbose:
                return block.header_hex()
            return self.header_fields(block)

    def block_json(self, block_hash: str, verbosity: int = 1) -> bytes:
        """The JSON text of getblock's result (bytes), cached per block and verbosity."""
        if verbosity not in (0, 1, 2, 3):
            raise RpcFailure(-8, "Verbosity must be in range 0..3")
        with self.lock:
            block = self.lookup(block_hash)
            key = (block_hash, verbosity)
            cached = self._cache.get(key)
            # confirmations/nextblockhash change with the tip: the cache is keyed on it too.
            stamp = (self.tip_height, self._on_active_chain(block))
            if cached is not None and cached[0] == stamp:
                self._cache.move_to_end(key)
                return cached[1]
            text = self._rendered_file(block, verbosity, stamp)
            self._cache[key] = (stamp, text)
            while len(self._cache) > self._cache_blocks:
                self._cache.popitem(last=False)
            return text

    def _rendered_file(self, block: SimBlock, verbosity: int, stamp: tuple[int, bool]) -> bytes:
        """The rendered text, through the render_dir files when there is one (keyed on what it depends on)."""
        if self.render_dir is None:
            return self._render(block, verbosity).encode()
        path = self.render_dir / f"{block.hash}.v{verbosity}.tip{stamp[0]}.{'active' if stamp[1] else 'stale'}.json"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        text = self._render(block, verbosity).encode()
        self.render_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(text)
        partial.replace(path)
        return text

    def _render(self, block: SimBlock, verbosity: int) -> str:
        if verbosity == 0:
            return json.dumps(self._raw_hex(block))
        result = self.header_fields(block)
        if block.kind == "recorded":
            txs = block.payload["tx"]
        elif block.kind == "raw":
            txs = [
                raw_tx_json(tx, block.fees[i], block.prevouts[i], verbosity) for i, tx in enumerate(block.payload.txs)
            ]
        else:
            txs = synthetic.render_txs(block.payload, verbosity, self._ancestry(block))
        ordered = {
            k: result[k]
            for k in (
                "hash",
                "confirmations",
                "height",
                "version",
                "versionHex",
                "merkleroot",
                "time",
                "mediantime",
                "nonce",
                "bits",
                "difficulty",
                "chainwork",
                "nTx",
            )
            if k in result
        }
        for k in ("previousblockhash", "nextblockhash"):
            if k in result:
                ordered[k] = result[k]
        ordered["strippedsize"] = block.stripped_size
        ordered["size"] = block.size
        ordered["weight"] = block.weight
        ordered["tx"] = [t["txid"] for t in txs] if verbosity == 1 else txs
        return dumps(ordered)

    def _raw_hex(self, block: SimBlock) -> str:
        if block.kind == "raw":
            return block.payload.raw.hex()
        if block.kind == "recorded":
            hex_file = self.hex_files.get(block.hash)
            if hex_file is None:
                raise RpcFailure(-1, "raw block data not recorded for this block")
            return hex_file.read_text().strip()
        return synthetic.raw_block_hex(block.header_hex(), block.payload)

    def _ancestry(self, block: SimBlock):
        """h -> the synthetic data of the block's ancestor at height h (a stale block's branch until it meets the
        active chain, then the active chain)."""
        stale: dict[int, SimBlock] = {}
        b: SimBlock | None = block
        while b is not None and self.by_height.get(b.height) is not b:
            stale[b.height] = b
            b = self.by_hash.get(b.prev_hash) if b.prev_hash else None
        return lambda h: (stale.get(h) or self.by_height[h]).payload

    def blockchain_info(self) -> dict[str, Any]:
        with self.lock:
            tip = self.tip
            times = sorted(
                b.time for b in (self.by_height.get(h) for h in range(tip.height - 10, tip.height + 1)) if b is not None
            )
            return {
                "chain": self.network,
                "blocks": tip.height,
                "headers": tip.height,
                "bestblockhash": tip.hash,
                "difficulty": tip.difficulty,
                "time": tip.time,
                "mediantime": tip.mediantime or int(statistics.median_low(times)),
                "verificationprogress": 1.0,
                "initialblockdownload": False,
                "chainwork": tip.chainwork_hex,
                "size_on_disk": sum(b.size for b in self.by_height.values()),
                "pruned": False,
                "warnings": "",
            }
