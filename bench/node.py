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
`--save-raw DIR` writes the Core blocks' raw bytes (for --decoders); `--decoders DIR` only times raw-block
decoding with whichever maintained libraries are importable (py-bitcoinkernel, bdkpython,
python-bitcoinlib) on the blocks in DIR, and needs nothing else of the project.
Usage: python -m bench.node [--connections 4] [--blocks 40] [--tx-per-block 3000] [--save-raw DIR]
       python -m bench.node --decoders DIR
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


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


def serve_rates(
    port: int, auth: str, hashes: list[str], tx_count: int, connections: int, verbosity: int, pid: int
) -> dict:
    """Every connection fetches every block once; wall time of all of them."""
    conns = [Connection(port, auth) for _ in range(connections)]
    for c in conns:  # connect and authenticate outside the timing
        c.call("getblockcount")

    def run(c: Connection) -> int:
        return sum(len(c.raw("getblock", h, verbosity)) for h in hashes)

    started, node_cpu = time.perf_counter(), process_cpu(pid)
    with ThreadPoolExecutor(connections) as pool:
        total = sum(pool.map(run, conns))
    seconds = time.perf_counter() - started
    node_cpu = process_cpu(pid) - node_cpu
    calls = connections * len(hashes)
    return {
        "verbosity": verbosity,
        "connections": connections,
        "calls_per_sec": calls / seconds,
        "mb_per_sec": total / 1e6 / seconds,
        "tx_per_sec": connections * tx_count / seconds,
        "bytes_per_block": total / calls,
        "node_cpu_sec": node_cpu,
        "node_cpu_us_per_tx": node_cpu / (connections * tx_count) * 1e6,
        "mb_per_node_cpu_sec": total / 1e6 / node_cpu if node_cpu else None,
    }


def loader_rates(rpc, heights: list[int], workers: int, processes: int, pid: int) -> dict:
    import resource

    from app.btc.mapper import map_block
    from app.progress import StageTimes

    def own_cpu() -> float:  # this process and its finished decode processes
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    rpc.stage_times = StageTimes()
    started, cpu, node_cpu = time.perf_counter(), own_cpu(), process_cpu(pid)
    tx = sum(
        len(m.tx_rows) for m in rpc.iter_blocks(heights, 2, workers=workers, transform=map_block, processes=processes)
    )
    seconds = time.perf_counter() - started
    cpu, node_cpu = own_cpu() - cpu, process_cpu(pid) - node_cpu
    stages = rpc.stage_times.take()
    rpc.stage_times = None
    return {
        "workers": workers,
        "processes": processes,
        "blocks_per_sec": len(heights) / seconds,
        "tx_per_sec": tx / seconds,
        "stages": stages,
        "tx": tx,
        "loader_cpu_us_per_tx": cpu / tx * 1e6,
        "node_cpu_us_per_tx": node_cpu / tx * 1e6,
    }


def measure(label: str, port: int, auth: str, rpc, heights: list[int], connections: int, verbosities, pid: int) -> dict:
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
    for workers, processes in ((4, 0), (4, 2)):
        r = loader_rates(rpc, heights, workers, processes, pid)
        out["loader"].append(r)
        stage_text = ", ".join(f"{k} {s:.2f}s" for k, s in r["stages"].items())
        mode = f"{processes} decode processes" if processes else f"{workers} fetch threads"
        print(
            f"loader fetch path (iter_blocks + map_block, {mode}): {r['blocks_per_sec']:,.1f} blocks/s,"
            f" {r['tx_per_sec']:,.0f} tx/s; CPU: loader {r['loader_cpu_us_per_tx']:.1f} us/tx, node"
            f" {r['node_cpu_us_per_tx']:.1f} us/tx; stage seconds {stage_text} (load average {load_average()})"
        )
    return out


def decoders(directory: Path, limit: int) -> None:
    """Raw-block decoding rates of the maintained libraries that are importable here (the last ``limit`` blocks)."""
    blocks = [p.read_bytes() for p in sorted(directory.glob("*.bin"))[-limit:]]
    print(f"{len(blocks)} raw blocks, {sum(map(len, blocks)) / 1e6:.1f} MB (load average {load_average()})")

    def timed(name: str, decode, inputs: list | None = None) -> None:
        started, cpu = time.perf_counter(), time.process_time()
        tx = sum(decode(b) for b in (blocks if inputs is None else inputs))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"{name}: {tx:,} tx in {seconds:.2f}s = {tx / seconds:,.0f} tx/s; CPU {cpu / tx * 1e6:.1f} us/tx")

    replies = [p.read_bytes() for p in sorted(directory.glob("*.json"))[-limit:]]
    if replies:  # the JSON path of the loader on the same blocks: the reference of this run
        import decimal
        import gc

        from app.btc.mapper import map_block

        def json_path(reply: bytes) -> int:
            return len(map_block(json.loads(reply.decode(), parse_float=decimal.Decimal)["result"]).tx_rows)

        gc.disable()  # as the loader runs
        timed(
            f"loader JSON path: json.loads(parse_float=Decimal) + map_block ({sum(map(len, replies)) / 1e6:.0f} MB)",
            json_path,
            replies,
        )
        gc.enable()
    try:
        import pbk  # py-bitcoinkernel: Bitcoin Core's own libbitcoinkernel

        def kernel(raw: bytes) -> int:
            n = 0
            for tx in pbk.Block(raw).transactions:
                _ = (tx.txid, sum(o.amount for o in tx.outputs), len(tx.inputs), len(bytes(tx)))
                n += 1
            return n

        timed("py-bitcoinkernel Block -> txid, output sum, input count, size", kernel)
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

        timed("py-bitcoinkernel split + bdkpython Transaction -> txid, size, vsize, weight, output sum", kernel_bdk)
    except ImportError:
        print("bdkpython + py-bitcoinkernel: not installed")
    try:
        from bitcoin.core import CBlock

        def bitcoinlib(raw: bytes) -> int:
            block = CBlock.deserialize(raw)
            for tx in block.vtx:
                _ = (tx.GetTxid(), sum(o.nValue for o in tx.vout), len(tx.vin))
            return len(block.vtx)

        timed("python-bitcoinlib CBlock.deserialize -> txid, output sum", bitcoinlib)
    except ImportError:
        print("python-bitcoinlib: not installed")
    started = time.perf_counter()
    for raw in blocks:
        bytes.fromhex(raw.hex())
    print(f"bytes.fromhex of the hex (the RPC's verbosity 0 answer): {time.perf_counter() - started:.3f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=40, help="regtest blocks with transactions; sim-node blocks")
    parser.add_argument("--tx-per-block", type=int, default=3000, help="sim-node's synthetic blocks")
    parser.add_argument("--save-raw", type=Path)
    parser.add_argument("--decoders", type=Path, help="only time raw-block decoders on DIR/*.bin")
    parser.add_argument("--decode-blocks", type=int, default=5, help="with --decoders: the last N blocks of DIR")
    args = parser.parse_args()
    if args.decoders:
        decoders(args.decoders, args.decode_blocks)
        return

    import tempfile

    from bench.common import machine_line
    from tests.regtest_chain import ChainSpec, cached_chain, running_node
    from tests.simnode_proc import RPC_PASSWORD, RPC_USER, SimNodeProcess

    print(machine_line())
    spec = ChainSpec(seed=10, tx_blocks=args.blocks, min_block_txs=900, max_block_txs=1600)
    chain = cached_chain(Path(tempfile.gettempdir()) / "mqnode-bench-chains", spec)
    results = {}
    with tempfile.TemporaryDirectory() as work, running_node(chain, Path(work)) as core:
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
        )
        if args.save_raw:
            args.save_raw.mkdir(parents=True, exist_ok=True)
            c = Connection(int(core.url.rsplit(":", 1)[1]), auth)
            for h in heights:
                block_hash = c.call("getblockhash", h)
                (args.save_raw / f"{h:07d}.bin").write_bytes(bytes.fromhex(c.call("getblock", block_hash, 0)))
                (args.save_raw / f"{h:07d}.json").write_bytes(c.raw("getblock", block_hash, 2))
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
