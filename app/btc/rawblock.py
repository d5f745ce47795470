"""The raw-block path: Bitcoin Core's serialised block and its spent outputs -> the rows map_block gives.

Core's REST interface (bitcoind ``-rest``) serves a block's bytes (``/rest/block/<hash>.bin``) and the
outputs its inputs spend, read from Core's undo data (``/rest/spenttxouts/<hash>.bin``), for 2-3 us of node
CPU per transaction against 114-176 us for getblock's JSON (docs/benchmarks.md, "Bitcoin Core's REST
interface"). ``getblockheader`` gives what the bytes do not: height, median time, chainwork, difficulty.

Decoding is libwally-core's (the pinned wallycore wheel, whose extension module exports its C API), called
from ``raw_decode.c`` in one C call per block that fills arrays of raw.btc_tx_raw's columns; the C module
is built with cffi the first time it is needed, into ``MQNODE_BUILD_DIR`` (a C compiler and Python's headers
are needed then; the application image builds it when the image is built).

The rows equal map_block's of getblock verbosity 2 for the same block, fee included (spent values minus
outputs, integer satoshis). No prevout stage rows are written: the spent outputs carry no creation height
or coinbase flag, so, as at verbosity 2, SQL records the block's prevouts as unknown and the UTXO set
columns and coin-age metrics stay NULL.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from app.btc.mapper import MalformedBlockError, MappedBlock
from app.settings import Settings
from app.simnode.rawblock import varint_size

SOURCE = Path(__file__).with_name("raw_decode.c")
MODULE = "_mqnode_raw_decode"
BUILD_DIR_ENV = "MQNODE_BUILD_DIR"
CDEF = """
typedef struct {
    unsigned char *txid;
    uint32_t *size, *weight, *n_in, *n_out, *utxo_count;
    int64_t *out_value, *utxo_value, *utxo_script_bytes;
    int64_t *in_value;
    uint8_t *coinbase, *segwit;
    unsigned char *prev_txid;
    uint32_t *prev_vout, *prev_tx;
    size_t max_tx, max_in, n_tx, n_spent;
} mq_columns;
int mq_init_wally(const char *path);
int mq_decode_wally(const unsigned char *raw, size_t len, mq_columns *c);
int mq_spent_values(const unsigned char *spent, size_t len, mq_columns *c);
"""
MIN_TX_BYTES = 60  # version, 1 input (41 B), 1 output (9 B), locktime: consensus requires both lists non-empty
MIN_INPUT_BYTES = 41
DECODE_ERRORS = {-1: "not a block of transactions libwally-core can parse", -3: "more transactions than bytes allow"}
SPENT_ERRORS = {
    -4: "its transaction count differs from the block's",
    -5: "a transaction's spent-output count differs from its input count",
    -6: "a spent output is cut short or negative",
    -7: "bytes after the last transaction",
}


class DecoderUnavailable(RuntimeError):
    """The raw-block decoder cannot be built or loaded here (no compiler, no wallycore); says what to do."""


def build_dir() -> Path:
    """MQNODE_BUILD_DIR (Settings.build_dir), read here alone: worker processes load the decoder too."""
    return Path(os.environ.get(BUILD_DIR_ENV) or Settings.__dataclass_fields__["build_dir"].default)


_build_lock = threading.Lock()


def _library() -> tuple[Any, Any]:
    """(ffi, lib) of raw_decode.c, built once per source, cffi and Python version and then loaded; one thread
    builds while the others wait (cffi's compile changes the process's working directory while it runs)."""
    with _build_lock:
        return _load_library()


@cache
def _load_library() -> tuple[Any, Any]:
    try:
        with warnings.catch_warnings():  # SWIG's "builtin type ... has no __module__" on Python 3.12-
            warnings.simplefilter("ignore", DeprecationWarning)
            import _wallycore  # the wallycore wheel's extension: libwally-core's C API
        import cffi
    except ImportError as exc:
        raise DecoderUnavailable(
            f"MQNODE_BTC_BLOCK_SOURCE=rest needs {exc.name} (pip install -e . installs cffi and wallycore)"
        ) from exc
    source = SOURCE.read_text()
    key = hashlib.sha256(f"{source}{cffi.__version__}{CDEF}{sys.version}".encode()).hexdigest()[:16]
    built = build_dir() / f"{MODULE}-{key}.so"
    _load_library.path = built
    if not built.exists():
        builder = cffi.FFI()
        builder.cdef(CDEF)
        builder.set_source(MODULE, source, libraries=["dl"], extra_compile_args=["-O2"])
        built.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=built.parent) as tmp:
            try:
                output = builder.compile(tmpdir=tmp)
            except Exception as exc:  # cffi raises distutils/setuptools errors of several kinds
                raise DecoderUnavailable(
                    f"cannot build the raw-block decoder ({exc}); it needs a C compiler and Python's headers"
                    " (Debian: gcc python3-dev), or use MQNODE_BTC_BLOCK_SOURCE=json"
                ) from exc
            os.replace(output, built)  # atomic: another process building the same key gets the same file
    spec = importlib.util.spec_from_file_location(MODULE, built)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ffi, lib = module.ffi, module.lib
    if lib.mq_init_wally(_wallycore.__file__.encode()):
        raise DecoderUnavailable(f"libwally-core in {_wallycore.__file__} lacks a symbol raw_decode.c needs")
    return ffi, lib


def allocate_columns(ffi: Any, c: Any, block_bytes: int) -> list[Any]:
    """Arrays for every column of ``c`` (an mq_columns) large enough for any block of ``block_bytes``; the
    caller keeps the returned list alive as long as ``c`` is used."""
    max_tx, max_in = block_bytes // MIN_TX_BYTES + 1, block_bytes // MIN_INPUT_BYTES + 1
    arrays = []
    for name, kind, n in (
        ("txid", "unsigned char", 32 * max_tx),
        *((f, "uint32_t", max_tx) for f in ("size", "weight", "n_in", "n_out", "utxo_count")),
        *((f, "int64_t", max_tx) for f in ("out_value", "utxo_value", "utxo_script_bytes", "in_value")),
        ("coinbase", "uint8_t", max_tx),
        ("segwit", "uint8_t", max_tx),
        ("prev_txid", "unsigned char", 32 * max_in),
        ("prev_vout", "uint32_t", max_in),
        ("prev_tx", "uint32_t", max_in),
    ):
        arrays.append(array := ffi.new(f"{kind}[]", n))
        setattr(c, name, array)
    c.max_tx, c.max_in = max_tx, max_in
    return arrays


def read_column(ffi: Any, c: Any, name: str, code: str, count: int) -> list:
    """The first ``count`` values of column ``name`` ("I" uint32, "q" int64, "B" uint8) as a list."""
    width = {"I": 4, "q": 8, "B": 1}[code]
    return memoryview(ffi.buffer(getattr(c, name), count * width)).cast(code).tolist()


class RawBlockDecoder:
    """Column arrays for one thread (the C call fills them; cffi releases the GIL while it runs)."""

    def __init__(self) -> None:
        self.ffi, self.lib = _library()
        self.c = self.ffi.new("mq_columns *")
        self._arrays: list[Any] = []
        self._capacity = 0

    def _reserve(self, block_bytes: int) -> None:
        if block_bytes > self._capacity:
            self._capacity = max(block_bytes, 1 << 20)
            self._arrays = allocate_columns(self.ffi, self.c, self._capacity)

    def _column(self, name: str, code: str, count: int) -> list:
        return read_column(self.ffi, self.c, name, code, count)

    def map(self, header: dict[str, Any], raw: bytes, spent: bytes | None) -> MappedBlock:
        """Rows of one block: ``header`` is getblockheader's result, ``raw`` the block's bytes and ``spent``
        Core's spent outputs of it (REST spenttxouts .bin; None: fees unknown, NULL). Raises
        MalformedBlockError naming the block when the three do not belong together."""
        try:
            height, block_hash = header["height"], header["hash"]
        except (KeyError, TypeError) as exc:
            raise MalformedBlockError(f"getblockheader result without height and hash: {header!r:.200}") from exc
        where = f"block {height} ({block_hash})"
        if hashlib.sha256(hashlib.sha256(raw[:80]).digest()).digest()[::-1].hex() != block_hash:
            raise MalformedBlockError(f"{where}: the raw block's header does not hash to the block's hash")
        self._reserve(len(raw))
        rc = self.lib.mq_decode_wally(raw, len(raw), self.c)
        if rc:
            raise MalformedBlockError(f"{where}: raw block {DECODE_ERRORS.get(rc, f'not decoded ({rc})')}")
        c, n = self.c, self.c.n_tx
        if n != header.get("nTx", n):
            raise MalformedBlockError(f"{where}: {n} transactions in the raw block, nTx {header['nTx']}")
        size, weight, n_in, n_out, utxo_count = (
            self._column(f, "I", n) for f in ("size", "weight", "n_in", "n_out", "utxo_count")
        )
        out_value, utxo_value, utxo_bytes = (
            self._column(f, "q", n) for f in ("out_value", "utxo_value", "utxo_script_bytes")
        )
        coinbase, segwit = self._column("coinbase", "B", n), self._column("segwit", "B", n)
        if coinbase[0] != 1 or any(coinbase[1:]):
            raise MalformedBlockError(f"{where}: the raw block's coinbase is not (only) its first transaction")
        if spent is None:
            fees: list[int | None] = [None] * n
        else:
            rc = self.lib.mq_spent_values(spent, len(spent), c)
            if rc:
                raise MalformedBlockError(f"{where}: spent outputs do not fit the block: {SPENT_ERRORS[rc]}")
            in_value = self._column("in_value", "q", n)
            fees = [None, *(in_value[t] - out_value[t] for t in range(1, n))]
            if min(fees[1:], default=0) < 0:
                raise MalformedBlockError(f"{where}: a transaction spends less than it pays out")
        txids = bytes(self.ffi.buffer(c.txid, 32 * n))
        tx_rows = [
            (height, t, txids[32 * t : 32 * t + 32], size[t], (weight[t] + 3) // 4, weight[t], t == 0, segwit[t] == 1)
            + (n_in[t], n_out[t], out_value[t], fees[t], utxo_count[t], utxo_value[t], utxo_bytes[t])
            for t in range(n)
        ]
        block_weight = 4 * (80 + varint_size(n)) + sum(weight)
        previous = header.get("previousblockhash")
        if (previous or "0" * 64) != raw[4:36][::-1].hex() or header.get("merkleroot") != raw[36:68][::-1].hex():
            raise MalformedBlockError(f"{where}: the raw block's header differs from getblockheader's")
        block_row = (
            height,
            block_hash,
            previous,
            datetime.fromtimestamp(header["time"], UTC),
            datetime.fromtimestamp(header["mediantime"], UTC),
            n,
            len(raw),
            (block_weight - len(raw)) // 3,  # weight = 3 x stripped size + size
            block_weight,
            header["difficulty"] if isinstance(header["difficulty"], Decimal) else Decimal(str(header["difficulty"])),
            header["chainwork"],
            header["version"],
            header["merkleroot"],
            header["bits"],
            header["nonce"],
        )
        return MappedBlock(height, block_hash, previous, block_row, tx_rows)


_local = threading.local()


def map_raw_block(header: dict[str, Any], raw: bytes, spent: bytes | None) -> MappedBlock:
    """RawBlockDecoder.map with this thread's decoder."""
    decoder = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = RawBlockDecoder()
    return decoder.map(header, raw, spent)


def map_raw_parts(parts: tuple[dict[str, Any], bytes, bytes | None]) -> MappedBlock:
    """map_raw_block of BitcoinRpc.get_raw_block's tuple: the transform of iter_blocks' "rest" source."""
    return map_raw_block(*parts)


def main() -> None:
    """`python -m app.btc.rawblock`: build (or find) the decoder now and print where it is; the image runs it."""
    _library()
    print(_load_library.path)


if __name__ == "__main__":
    main()
