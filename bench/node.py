"""What the node can serve: getblock at verbosity 2, 3 (JSON) and 0 (hex) from a real Bitcoin Core and from
sim-node, per connection and with several, and the loader's own fetch path against both.

- Bitcoin Core: a regtest chain of realistic blocks built by tests/regtest_chain.py (default 40 blocks of
  900-1,600 transactions of every script type, cached like the test chains), started from
  ../shared/bin/bitcoind (or MQNODE_TEST_BITCOIND).
- sim-node: `--blocks` synthetic blocks of `--tx-per-block` transactions, served from its memory cache
  (measured after one warm-up pass: serving, not rendering).
For each node and verbosity: calls/s, MB/s of response and tx/s with 1 and `--connections` keep-alive
connections (http.client, one per thread), the raw block bytes (hex / 2) and the JSON bytes per raw
byte; then the loader's fetch path (BitcoinRpc.iter_blocks with the mapper, 4 fetch threads as
MQNODE_BTC_FETCH_WORKERS defaults to; and with 2 decode processes) with its stage seconds.
For Bitcoin Core also its REST interface: the raw block (`/rest/block/<hash>.bin`) and the spent outputs
of a block from its undo data (`/rest/spenttxouts/<hash>.bin` and `.json`), what a raw-block path would fetch.
`--save-raw DIR` writes the Core blocks' raw bytes, their verbosity 2 replies and their REST spenttxouts
(for --decoders, which first checks that the spent outputs give exactly verbosity 2's fees);
`--decoders DIR` only times raw-block decoding on the blocks in DIR against the loader's JSON path (map_block)
on the same blocks, with whichever maintained libraries are importable: the columnar C loop of
app/btc/raw_decode.c + bench/raw_decode_kernel.c (built with cffi over libwally-core from the wallycore wheel
and libbitcoinkernel from the py-bitcoinkernel wheel; its columns are first checked equal to the JSON path's
rows on every block in DIR), py-bitcoinkernel, bdkpython, python-bitcoinlib; it needs no database or node.
Usage: python -m bench.node [--connections 4] [--blocks 40] [--tx-per-block 3000] [--save-raw DIR]
       python -m bench.node --decoders DIR [--decode-blocks 5] [--decode-rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.btc import rawblock


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process: unlike wall time, they do not grow with the machine's load."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Connection:
    def __init__(self, port: int, auth: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.auth = "Basic " + base64.b64encode(auth.encode()).decode()

    def raw(self, method: str, *params: object) -> bytes:
        body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)})
        self.conn.request("POST", "/", body, {"Authorization": self.auth, "Content-Type": "application/json"})
        return self.conn.getresponse().read()

    def call(self, method: str, *params: object) -> object:
        return json.loads(self.raw(method, *params))["result"]


def fetch_rates(conns: list, fetch, items: list[str], tx_count: int, pid: int) -> dict:
    """Every connection fetches every item once (``fetch(conn, item)`` returns the reply's bytes); wall time
    of all of them and the node's CPU seconds meanwhile."""
    started, node_cpu = time.perf_counter(), process_cpu(pid)
    with ThreadPoolExecutor(len(conns)) as pool:
        total = sum(pool.map(lambda c: sum(fetch(c, item) for item in items), conns))
    seconds = time.perf_counter() - started
    node_cpu = process_cpu(pid) - node_cpu
    calls = len(conns) * len(items)
    return {
        "connections": len(conns),
        "calls_per_sec": calls / seconds,
        "mb_per_sec": total / 1e6 / seconds,
        "tx_per_sec": len(conns) * tx_count / seconds,
        "bytes_per_block": total / calls,
        "node_cpu_sec": node_cpu,
        "node_cpu_us_per_tx": node_cpu / (len(conns) * tx_count) * 1e6,
        "mb_per_node_cpu_sec": total / 1e6 / node_cpu if node_cpu else None,
    }


def serve_rates(
    port: int, auth: str, hashes: list[str], tx_count: int, connections: int, verbosity: int, pid: int
) -> dict:
    """getblock at ``verbosity`` over JSON-RPC."""
    conns = [Connection(port, auth) for _ in range(connections)]
    for c in conns:  # connect and authenticate outside the timing
        c.call("getblockcount")
    rates = fetch_rates(conns, lambda c, h: len(c.raw("getblock", h, verbosity)), hashes, tx_count, pid)
    return {"verbosity": verbosity, **rates}


def rest_get(conn: http.client.HTTPConnection, path: str) -> bytes:
    """One REST reply (`/rest/<path>`) on a keep-alive connection; an error unless HTTP 200."""
    conn.request("GET", f"/rest/{path}")
    reply = conn.getresponse()
    body = reply.read()
    if reply.status != 200:
        raise RuntimeError(f"REST {path}: HTTP {reply.status} {body[:200]!r}")
    return body


def rest_rates(port: int, paths: list[str], tx_count: int, connections: int, resource: str, pid: int) -> dict:
    """Bitcoin Core's REST interface (-rest): `/rest/block/<hash>.bin` (the raw block, no hex) or
    `/rest/spenttxouts/<hash>.bin` (every input's spent output from Core's undo data: per transaction a
    CompactSize count, then each CTxOut, value and scriptPubKey; no creation height or coinbase flag).
    No authentication (REST is public on the RPC port)."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=600) for _ in range(connections)]
    for c in conns:  # connect outside the timing
        rest_get(c, paths[0])
    return {"rest": resource, **fetch_rates(conns, lambda c, p: len(rest_get(c, p)), paths, tx_count, pid)}


def loader_rates(rpc, heights: list[int], workers: int, processes: int, pid: int, source: str = "json") -> dict:
    """The loader's fetch + decode + map (iter_blocks) over ``heights``: "json" getblock v2 and map_block,
    "rest" the raw-block path (getblockheader + REST block and spent outputs, rawblock.map_raw_parts)."""
    import resource

    from app.btc.mapper import map_block
    from app.progress import StageTimes

    def own_cpu() -> float:  # this process and its finished decode processes
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    rpc.stage_times = StageTimes()
    started, cpu, node_cpu = time.perf_counter(), own_cpu(), process_cpu(pid)
    tx = sum(
        len(m.tx_rows)
        for m in rpc.iter_blocks(
            heights,
            2,
            workers=workers,
            transform=rawblock.map_raw_parts if source == "rest" else map_block,
            processes=processes,
            source=source,
        )
    )
    seconds = time.perf_counter() - started
    cpu, node_cpu = own_cpu() - cpu, process_cpu(pid) - node_cpu
    stages = rpc.stage_times.take()
    rpc.stage_times = None
    return {
        "workers": workers,
        "processes": processes,
        "source": source,
        "blocks_per_sec": len(heights) / seconds,
        "tx_per_sec": tx / seconds,
        "stages": stages,
        "tx": tx,
        "loader_cpu_us_per_tx": cpu / tx * 1e6,
        "node_cpu_us_per_tx": node_cpu / tx * 1e6,
    }


def measure(
    label: str,
    port: int,
    auth: str,
    rpc,
    heights: list[int],
    connections: int,
    verbosities,
    pid: int,
    rest: bool = False,
) -> dict:
    first = Connection(port, auth)
    hashes = [first.call("getblockhash", h) for h in heights]
    tx_count = sum(len(first.call("getblock", h, 1)["tx"]) for h in hashes)
    raw_bytes = sum(len(first.call("getblock", h, 0)) // 2 for h in hashes)
    for v in verbosities:  # warm-up: sim-node renders into its cache, Core reads its block files once
        for h in hashes:
            first.raw("getblock", h, v)
    out = {"node": label, "blocks": len(hashes), "tx": tx_count, "raw_bytes": raw_bytes, "serve": [], "loader": []}
    print(
        f"== {label}: {len(hashes)} blocks, {tx_count:,} tx, {raw_bytes / len(hashes) / 1e6:.2f} MB raw per block,"
        f" {raw_bytes / tx_count:,.0f} B per tx (load average {load_average()})"
    )
    for v in verbosities:
        for n in sorted({1, connections}):
            r = serve_rates(port, auth, hashes, tx_count, n, v, pid)
            out["serve"].append(r)
            print(
                f"getblock v{v} x {n} connection(s): {r['calls_per_sec']:,.1f} blocks/s, {r['mb_per_sec']:,.1f} MB/s,"
                f" {r['tx_per_sec']:,.0f} tx/s, {r['bytes_per_block'] / raw_bytes * len(hashes):.2f} B per raw byte;"
                f" node CPU {r['node_cpu_us_per_tx']:.1f} us/tx, {r['mb_per_node_cpu_sec'] or 0:,.1f} MB per CPU s"
            )
    for resource in ("block/{}.bin", "spenttxouts/{}.bin", "spenttxouts/{}.json") if rest else ():
        for n in sorted({1, connections}):
            r = rest_rates(port, [resource.format(h) for h in hashes], tx_count, n, resource.split("/")[0], pid)
            r["format"] = resource.rsplit(".", 1)[1]
            out.setdefault("rest", []).append(r)
            print(
                f"REST {resource.format('<hash>')} x {n} connection(s): {r['calls_per_sec']:,.1f} blocks/s,"
                f" {r['mb_per_sec']:,.1f} MB/s, {r['tx_per_sec']:,.0f} tx/s, {r['bytes_per_block'] / 1e3:,.0f} KB"
                f" per block; node CPU {r['node_cpu_us_per_tx']:.1f} us/tx"
            )
    if rest:  # the same run's ratio: what a raw path over REST costs the node against getblock's JSON
        per_tx = {
            (r["rest"], r["format"]): r["node_cpu_us_per_tx"] for r in out["rest"] if r["connections"] == connections
        }
        raw_path = per_tx[("block", "bin")] + per_tx[("spenttxouts", "bin")]
        for r in out["serve"]:
            if r["connections"] == connections and r["verbosity"] in (2, 3) and raw_path > 0:
                print(
                    f"node CPU per tx, REST block.bin + spenttxouts.bin {raw_path:.1f} us against getblock"
                    f" v{r['verbosity']} {r['node_cpu_us_per_tx']:.1f} us:"
                    f" {r['node_cpu_us_per_tx'] / raw_path:.0f}x less"
                )
    runs = [("json", 4, 0), ("json", 4, 2)]
    if rest:
        runs[1:1] = [("rest", 4, 0)]
        runs.append(("rest", 4, 2))
    for source, workers, processes in runs:
        r = loader_rates(rpc, heights, workers, processes, pid, source)
        out["loader"].append(r)
        stage_text = ", ".join(f"{k} {s:.2f}s" for k, s in r["stages"].items())
        mode = f"{processes} decode processes" if processes else f"{workers} fetch threads"
        path = "REST raw block + spent outputs, map_raw_parts" if source == "rest" else "getblock v2, map_block"
        print(
            f"loader fetch path (iter_blocks: {path}, {mode}): {r['blocks_per_sec']:,.1f} blocks/s,"
            f" {r['tx_per_sec']:,.0f} tx/s; CPU: loader {r['loader_cpu_us_per_tx']:.1f} us/tx, node"
            f" {r['node_cpu_us_per_tx']:.1f} us/tx; stage seconds {stage_text} (load average {load_average()})"
        )
    return out


KERNEL_CDEF = """
int mq_init_kernel(const char *path);
int mq_decode_kernel(const unsigned char *raw, size_t len, mq_columns *c, int with_wally);
"""


class ColumnarDecoder:
    """The raw-block path's C decoder (app/btc/raw_decode.c) with bench/raw_decode_kernel.c's libbitcoinkernel
    variant appended, built with cffi: one C call per block fills arrays of the loader's columns (and the
    block's spent outpoints) with libwally-core or libbitcoinkernel doing the decoding; ``rows`` turns them
    into map_block's tx rows (fee None: it needs the prevouts) for the equality check and the Python cost."""

    def __init__(self, build_dir: Path, max_block_bytes: int):
        import importlib.util

        import _wallycore  # the wallycore wheel: its extension exports libwally-core's C API
        import cffi
        import pbk  # the py-bitcoinkernel wheel: libbitcoinkernel.so

        builder = cffi.FFI()
        builder.cdef(rawblock.CDEF + KERNEL_CDEF)
        source = rawblock.SOURCE.read_text() + (Path(__file__).parent / "raw_decode_kernel.c").read_text()
        builder.set_source("_mqnode_raw_decode", source, libraries=["dl"], extra_compile_args=["-O2"])
        built = builder.compile(tmpdir=str(build_dir))
        spec = importlib.util.spec_from_file_location("_mqnode_raw_decode", built)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.ffi, self.lib = module.ffi, module.lib
        kernel = next((Path(pbk.__file__).parent / "_libs").glob("*bitcoinkernel*"))
        if self.lib.mq_init_wally(_wallycore.__file__.encode()) or self.lib.mq_init_kernel(str(kernel).encode()):
            raise RuntimeError("libwally-core or libbitcoinkernel: a symbol is missing")
        self.c = self.ffi.new("mq_columns *")
        self.arrays = rawblock.allocate_columns(self.ffi, self.c, max_block_bytes)

    def decode(self, raw: bytes, library: str) -> int:
        if library == "wally":
            rc = self.lib.mq_decode_wally(raw, len(raw), self.c)
        else:
            rc = self.lib.mq_decode_kernel(raw, len(raw), self.c, int(library == "kernel+wally"))
        if rc:
            raise ValueError(f"{library}: block not decoded ({rc})")
        return self.c.n_tx

    def _column(self, name: str, code: str, count: int) -> list:
        return rawblock.read_column(self.ffi, self.c, name, code, count)

    def rows(self, height: int) -> list[tuple]:
        n = self.c.n_tx
        txids = bytes(self.ffi.buffer(self.c.txid, 32 * n))
        size, weight, n_in, n_out, utxo_count = (
            self._column(f, "I", n) for f in ("size", "weight", "n_in", "n_out", "utxo_count")
        )
        out_value, utxo_value, utxo_bytes = (
            self._column(f, "q", n) for f in ("out_value", "utxo_value", "utxo_script_bytes")
        )
        coinbase, segwit = self._column("coinbase", "B", n), self._column("segwit", "B", n)
        return [
            (height, i, txids[32 * i : 32 * i + 32], size[i], (weight[i] + 3) // 4, weight[i], coinbase[i] == 1)
            + (segwit[i] == 1, n_in[i], n_out[i], out_value[i], None, utxo_count[i], utxo_value[i], utxo_bytes[i])
            for i in range(n)
        ]

    def spent(self) -> list[tuple[bytes, int, int]]:
        """(txid of the spent output in getblock's byte order, its index, index of the spending tx)"""
        m = self.c.n_spent
        txids = bytes(self.ffi.buffer(self.c.prev_txid, 32 * m))
        vout, spender = self._column("prev_vout", "I", m), self._column("prev_tx", "I", m)
        return [(txids[32 * k : 32 * k + 32][::-1], vout[k], spender[k]) for k in range(m)]


def check_columnar(decoder: ColumnarDecoder, directory: Path) -> None:
    """The columns of every saved block equal the JSON path's rows (fee aside) and its vin outpoints."""
    import decimal

    from app.btc.mapper import map_block

    checked = 0
    for path in sorted(directory.glob("*.bin")):
        raw, block = path.read_bytes(), json.loads(path.with_suffix(".json").read_bytes(), parse_float=decimal.Decimal)
        mapped = map_block(block["result"])
        want = [row[:11] + (None,) + row[12:] for row in mapped.tx_rows]
        spent = [
            (bytes.fromhex(i["txid"]), i["vout"], t)
            for t, tx in enumerate(block["result"]["tx"])
            if t
            for i in tx["vin"]
        ]
        for library in ("wally", "kernel+wally"):
            decoder.decode(raw, library)
            if decoder.rows(mapped.height) != want or decoder.spent() != spent:
                raise AssertionError(f"{path.name}: {library} columns differ from the JSON path's rows")
        checked += len(want)
    print(f"columnar decoders (wally, kernel+wally): every column of {checked:,} tx equals the JSON path's rows")


def spent_values(spent: bytes) -> list[list[int]]:
    """Core's `/rest/spenttxouts/<hash>.bin`: a CompactSize count of transactions, then per transaction a
    CompactSize count of its spent outputs and each CTxOut (int64 value, CompactSize script length, script).
    Returns the spent values per transaction (the coinbase's list is empty)."""
    from app.simnode.rawblock import read_varint as read_compact_size

    count, pos = read_compact_size(spent, 0)
    out = []
    for _ in range(count):
        n, pos = read_compact_size(spent, pos)
        values = []
        for _ in range(n):
            values.append(int.from_bytes(spent[pos : pos + 8], "little", signed=True))
            length, pos = read_compact_size(spent, pos + 8)
            pos += length
        out.append(values)
    if pos != len(spent):
        raise ValueError(f"spenttxouts: {len(spent) - pos} bytes after the last transaction")
    return out


def check_spent_outputs(directory: Path) -> None:
    """Fees from Core's undo data: for every saved block with a `.spent` file (REST spenttxouts), each
    transaction's spent outputs are as many as its inputs and their values minus its outputs equal the fee of
    getblock verbosity 2, in integer satoshis. Then the CPU of reading them in Python, per transaction."""
    import decimal

    from app.btc.mapper import map_block

    paths = [p for p in sorted(directory.glob("*.bin")) if p.with_suffix(".spent").exists()]
    if not paths:
        print(f"no .spent files in {directory} (written by --save-raw): spent outputs not checked")
        return
    checked = 0
    for path in paths:
        block = json.loads(path.with_suffix(".json").read_bytes(), parse_float=decimal.Decimal)["result"]
        rows = map_block(block).tx_rows
        values = spent_values(path.with_suffix(".spent").read_bytes())
        if len(values) != len(rows):
            raise AssertionError(f"{path.name}: {len(values)} transactions in spenttxouts, {len(rows)} in the block")
        for t, (row, spent, tx) in enumerate(zip(rows, values, block["tx"], strict=True)):
            if len(spent) != (0 if t == 0 else len(tx["vin"])):
                raise AssertionError(f"{path.name} tx {t}: {len(spent)} spent outputs for {len(tx['vin'])} inputs")
            if t and sum(spent) - row[10] != row[11]:
                raise AssertionError(f"{path.name} tx {t}: inputs - outputs = {sum(spent) - row[10]}, fee {row[11]}")
        checked += len(rows)
    print(f"spenttxouts: the spent outputs of {checked:,} tx give exactly getblock v2's fees")
    spent_files = [p.with_suffix(".spent").read_bytes() for p in paths]
    for round_ in range(3):
        cpu = time.process_time()
        for data in spent_files:
            spent_values(data)
        print(
            f"round {round_ + 1}: reading spenttxouts in Python {(time.process_time() - cpu) / checked * 1e6:.1f}"
            " us of CPU per tx"
        )


def decoders(directory: Path, limit: int, rounds: int) -> None:
    """Raw-block decoding rates of the maintained libraries that are importable here (the last ``limit`` blocks),
    each timed ``rounds`` times interleaved with the JSON path (CPU of this one thread)."""
    import decimal
    import gc
    import tempfile

    blocks = [p.read_bytes() for p in sorted(directory.glob("*.bin"))[-limit:]]
    replies = [p.with_suffix(".json").read_bytes() for p in sorted(directory.glob("*.bin"))[-limit:]]
    print(f"{len(blocks)} raw blocks, {sum(map(len, blocks)) / 1e6:.1f} MB (load average {load_average()})")
    timings: list[tuple[str, object, list]] = []

    from app.btc.mapper import map_block

    def json_path(reply: bytes) -> int:
        return len(map_block(json.loads(reply.decode(), parse_float=decimal.Decimal)["result"]).tx_rows)

    timings.append(
        (
            f"loader JSON path: json.loads(parse_float=Decimal) + map_block ({sum(map(len, replies)) / 1e6:.0f} MB)",
            json_path,
            replies,
        )
    )
    v0_replies = [  # what getblock <hash> 0 answers, with the block's tx count
        (json.dumps({"result": raw.hex(), "error": None, "id": 1}).encode(), len(json.loads(reply)["result"]["tx"]))
        for raw, reply in zip(blocks, replies, strict=True)
    ]

    def v0_envelope(reply_and_count: tuple[bytes, int]) -> int:
        bytes.fromhex(json.loads(reply_and_count[0])["result"])
        return reply_and_count[1]

    timings.append(
        ("the v0 reply itself: json.loads + bytes.fromhex of the hex (no decoding)", v0_envelope, v0_replies)
    )
    build = tempfile.TemporaryDirectory()
    try:
        columnar = ColumnarDecoder(Path(build.name), max(map(len, blocks)))
        check_columnar(columnar, directory)
        for library, what in (
            ("wally", "libwally-core: every column"),
            ("kernel", "libbitcoinkernel: every column but weight, vsize and the segwit flag (no accessor)"),
            ("kernel+wally", "libbitcoinkernel + libwally-core for weight and segwit: every column"),
        ):
            timings.append(
                (f"C loop per block, {what}, in C arrays", lambda raw, lib=library: columnar.decode(raw, lib), blocks)
            )
        for library in ("wally", "kernel+wally"):

            def with_rows(raw: bytes, lib: str = library) -> int:
                columnar.decode(raw, lib)
                columnar.spent()
                return len(columnar.rows(0))

            timings.append((f"C loop per block, {library}, + Python tx rows and spent outpoints", with_rows, blocks))
    except ImportError as exc:
        print(f"columnar decoders: {exc.name} not installed (cffi, wallycore and py-bitcoinkernel)")
    try:
        import pbk  # py-bitcoinkernel: Bitcoin Core's own libbitcoinkernel

        def kernel(raw: bytes) -> int:
            n = 0
            for tx in pbk.Block(raw).transactions:
                _ = (tx.txid, sum(o.amount for o in tx.outputs), len(tx.inputs), len(bytes(tx)))
                n += 1
            return n

        timings.append(("py-bitcoinkernel Block -> txid, output sum, input count, size", kernel, blocks))
    except ImportError:
        print("py-bitcoinkernel: not installed")
    try:
        import bdkpython as bdk
        import pbk

        def kernel_bdk(raw: bytes) -> int:
            n = 0
            for tx in pbk.Block(raw).transactions:
                t = bdk.Transaction(bytes(tx))
                _ = (t.compute_txid(), t.total_size(), t.vsize(), t.weight(), sum(o.value.to_sat() for o in t.output()))
                n += 1
            return n

        timings.append(
            (
                "py-bitcoinkernel split + bdkpython Transaction -> txid, size, vsize, weight, output sum",
                kernel_bdk,
                blocks,
            )
        )
    except ImportError:
        print("bdkpython + py-bitcoinkernel: not installed")
    try:
        from bitcoin.core import CBlock

        def bitcoinlib(raw: bytes) -> int:
            block = CBlock.deserialize(raw)
            for tx in block.vtx:
                _ = (tx.GetTxid(), sum(o.nValue for o in tx.vout), len(tx.vin))
            return len(block.vtx)

        timings.append(("python-bitcoinlib CBlock.deserialize -> txid, output sum", bitcoinlib, blocks))
    except ImportError:
        print("python-bitcoinlib: not installed")
    cpu_us: dict[str, list[float]] = {name: [] for name, _, _ in timings}
    gc.disable()  # as the loader runs
    for _ in range(rounds):
        for name, decode, inputs in timings:
            cpu = time.process_time()
            tx = sum(decode(b) for b in inputs)
            cpu_us[name].append((time.process_time() - cpu) / tx * 1e6)
    gc.enable()
    build.cleanup()
    reference = min(cpu_us[timings[0][0]])
    for name, figures in cpu_us.items():
        print(
            f"{name}: CPU {min(figures):.2f} us/tx (rounds: {', '.join(f'{f:.2f}' for f in figures)});"
            f" {min(figures) / reference:.3f}x the JSON path"
        )
    print(f"load average {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=40, help="regtest blocks with transactions; sim-node blocks")
    parser.add_argument("--tx-per-block", type=int, default=3000, help="sim-node's synthetic blocks")
    parser.add_argument("--save-raw", type=Path)
    parser.add_argument("--decoders", type=Path, help="only time raw-block decoders on DIR/*.bin")
    parser.add_argument("--decode-blocks", type=int, default=5, help="with --decoders: the last N blocks of DIR")
    parser.add_argument("--decode-rounds", type=int, default=3, help="with --decoders: interleaved timing rounds")
    args = parser.parse_args()
    if args.decoders:
        check_spent_outputs(args.decoders)
        decoders(args.decoders, args.decode_blocks, args.decode_rounds)
        return

    import tempfile

    from bench.common import machine_line
    from tests.regtest_chain import ChainSpec, cached_chain, running_node
    from tests.simnode_proc import RPC_PASSWORD, RPC_USER, SimNodeProcess

    print(machine_line())
    spec = ChainSpec(seed=10, tx_blocks=args.blocks, min_block_txs=900, max_block_txs=1600)
    chain = cached_chain(Path(tempfile.gettempdir()) / "mqnode-bench-chains", spec)
    results = {}
    with tempfile.TemporaryDirectory() as work, running_node(chain, Path(work), ["-rest"]) as core:
        from app.btc.rpc import BitcoinRpc, RpcConfig

        auth = core.cookie_file.read_text().strip()
        rpc = BitcoinRpc(RpcConfig(core.url, cookie_file=core.cookie_file, timeout_sec=600))
        heights = list(range(chain.first_tx_height, chain.tip_height + 1))
        results["core"] = measure(
            "Bitcoin Core regtest",
            int(core.url.rsplit(":", 1)[1]),
            auth,
            rpc,
            heights,
            args.connections,
            (2, 3, 0),
            core.proc.pid,
            rest=True,
        )
        if args.save_raw:
            args.save_raw.mkdir(parents=True, exist_ok=True)
            c = Connection(int(core.url.rsplit(":", 1)[1]), auth)
            rest = http.client.HTTPConnection("127.0.0.1", int(core.url.rsplit(":", 1)[1]), timeout=600)
            for h in heights:
                block_hash = c.call("getblockhash", h)
                (args.save_raw / f"{h:07d}.bin").write_bytes(bytes.fromhex(c.call("getblock", block_hash, 0)))
                (args.save_raw / f"{h:07d}.json").write_bytes(c.raw("getblock", block_hash, 2))
                (args.save_raw / f"{h:07d}.spent").write_bytes(rest_get(rest, f"spenttxouts/{block_hash}.bin"))
    sim_args = ("--synthetic", "--start-height", "840000", "--count", str(args.blocks))
    with SimNodeProcess(*sim_args, "--txs-per-block", str(args.tx_per_block)) as sim:
        heights = list(range(840000, 840000 + args.blocks))
        results["simnode"] = measure(
            "sim-node synthetic",
            sim.port,
            f"{RPC_USER}:{RPC_PASSWORD}",
            sim.rpc(timeout=600),
            heights,
            args.connections,
            (2, 0),
            sim.proc.pid,
        )


if __name__ == "__main__":
    main()
