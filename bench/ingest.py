"""End-to-end ingest benchmark: sim-node synthetic chain -> loader -> SQL, against bare JSON decoding.

Prints the loader's blocks/s and tx/s for `--blocks` blocks of `--txs-per-block` transactions, and the
ratio of its wall time to the time json.loads(parse_float=Decimal) alone takes on the same getblock
responses (goal: loader <= 2x decode).
Usage: python -m bench.ingest [--blocks 200] [--txs-per-block 2500]
"""

from __future__ import annotations

import argparse
import base64
import gc
import http.client
import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from app.btc.backfill import backfill
from app.btc.chain_sync import IngestOptions
from bench.common import bench_database, machine_line
from tests.simnode_proc import RPC_PASSWORD, RPC_USER, SimNodeProcess


def fetch_raw_responses(port: int, count: int, start: int, verbosity: int) -> list[bytes]:
    """The exact getblock response bodies the loader will receive (fetched once, not timed)."""
    auth = "Basic " + base64.b64encode(f"{RPC_USER}:{RPC_PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(method: str, *params: object) -> bytes:
        body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)})
        conn.request("POST", "/", body, {"Authorization": auth, "Content-Type": "application/json"})
        return conn.getresponse().read()

    bodies = []
    for height in range(start, start + count):
        block_hash = json.loads(call("getblockhash", height))["result"]
        bodies.append(call("getblock", block_hash, verbosity))
    conn.close()
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--txs-per-block", type=int, default=2500)
    parser.add_argument("--start-height", type=int, default=840000)
    parser.add_argument("--verbosity", type=int, default=2, choices=(2, 3))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--decode-processes",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[0, 2],
        help="loader modes to measure, e.g. 0,2 (0 = fetch threads in the loader process)",
    )
    args = parser.parse_args()
    print(machine_line())
    sim_args = (
        "--synthetic",
        "--start-height",
        str(args.start_height),
        "--count",
        str(args.blocks),
        "--txs-per-block",
        str(args.txs_per_block),
    )
    with SimNodeProcess(*sim_args) as node, bench_database() as url:
        t = time.perf_counter()
        bodies = fetch_raw_responses(node.port, args.blocks, args.start_height, args.verbosity)
        fetch_sec = time.perf_counter() - t
        megabytes = sum(len(b) for b in bodies) / 1e6
        # The baseline gets the loader's treatment: cyclic GC off while decoding (see chain_sync.ingest_range).
        gc.disable()
        t = time.perf_counter()
        txs = 0
        for body in bodies:
            txs += len(json.loads(body.decode(), parse_float=Decimal)["result"]["tx"])
        decode_sec = time.perf_counter() - t
        gc.enable()
        print(
            f"{args.blocks} blocks, {txs:,} tx, {megabytes:,.0f} MB of getblock v{args.verbosity} JSON "
            f"(first fetch {fetch_sec:.1f}s, warms sim-node's cache)"
        )
        print(f"bare json.loads(parse_float=Decimal), GC off: {decode_sec:.2f}s = {txs / decode_sec:,.0f} tx/s")

        end = args.start_height + args.blocks - 1
        for processes in args.decode_processes:
            options = IngestOptions(
                verbosity=args.verbosity, fetch_workers=args.workers, batch_blocks=20, decode_processes=processes
            )
            with psycopg.connect(url) as conn:
                conn.execute(
                    "TRUNCATE raw.btc_tx_raw, raw.btc_blocks_raw, core.btc_primitive_block,"
                    " core.btc_primitive_10m, core.sync_checkpoints"
                )
                conn.commit()
                t = time.perf_counter()
                report = backfill(
                    conn,
                    node.rpc(),
                    "range",
                    options,
                    args.start_height,
                    end,
                    show_progress=False,
                    build_until=datetime(2000, 1, 1, tzinfo=UTC),
                )
                loader_sec = time.perf_counter() - t
                (stored,) = conn.execute("SELECT count(*) FROM raw.btc_tx_raw").fetchone()
            assert stored == txs == report.transactions, (stored, txs, report.transactions)
            mode = f"{processes} decode processes" if processes else f"{args.workers} fetch threads"
            print(
                f"loader end to end ({mode}; RPC fetch + decode + map + COPY + SQL builders): {loader_sec:.2f}s = "
                f"{args.blocks / loader_sec:,.1f} blocks/s, {txs / loader_sec:,.0f} tx/s; "
                f"loader / bare decode = {loader_sec / decode_sec:.2f}x (goal <= 2x)"
            )


if __name__ == "__main__":
    main()
