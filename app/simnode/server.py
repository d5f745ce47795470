"""sim-node's JSON-RPC HTTP server and command line (`mqnode sim-node`, `python -m app.simnode.server`)."""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import secrets
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from app.simnode.chain import RpcFailure, SimChain, dumps
from app.simnode.protocol import RPC_INVALID_PARAMETER, RPC_METHOD_NOT_FOUND, Arg, Method, answer, bind, parse_hash
from app.simnode.synthetic import HALVING_INTERVAL


class SimNodeServer:
    """Serves a SimChain over HTTP JSON-RPC in a background thread."""

    def __init__(
        self,
        chain: SimChain,
        host: str = "127.0.0.1",
        port: int = 0,
        rpc_user: str | None = None,
        rpc_password: str | None = None,
        cookie: str | None = None,
    ):
        self.chain = chain
        self.credentials: list[bytes] = []
        if rpc_user is not None:
            self.credentials.append(f"{rpc_user}:{rpc_password or ''}".encode())
        if cookie is not None:
            self.credentials.append(cookie.encode())
        self.fail_next = 0
        self._fail_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"node": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._miner: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.httpd.server_address[0]}:{self.port}"

    def start(self) -> SimNodeServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="sim-node-http", daemon=True)
        self._thread.start()
        return self

    def mine_every(self, seconds: float) -> None:
        def loop() -> None:
            while not self._stop.wait(seconds):
                self.chain.mine(1)

        self._miner = threading.Thread(target=loop, name="sim-node-miner", daemon=True)
        self._miner.start()

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def authorized(self, header: str | None) -> bool:
        if not self.credentials:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:].strip())
        except ValueError:
            return False
        return any(hmac.compare_digest(given, c) for c in self.credentials)

    def take_failure(self) -> bool:
        with self._fail_lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return True
            return False

    # ---- RPC methods -------------------------------------------------------------------------
    def dispatch(self, method: str, params: list[Any] | dict[str, Any]) -> bytes:
        """The JSON text of the result of one call (raises RpcFailure as Core would); getblock is cached."""
        spec = METHODS.get(method)
        if spec is None:
            raise RpcFailure(RPC_METHOD_NOT_FOUND, "Method not found")
        args = bind(spec, params)
        chain = self.chain
        if method == "getblock":
            block_hash, verbosity = parse_hash(args[0], "blockhash"), args[1]
            return chain.block_json(block_hash, min(max(verbosity, 0), 3))  # Core: <= 0 hex, >= 3 with prevouts
        if method == "getblockhash":
            height = args[0]
            with chain.lock:
                block = chain.by_height.get(height)
                if height < 0 or block is None:
                    raise RpcFailure(RPC_INVALID_PARAMETER, "Block height out of range")
                return json.dumps(block.hash).encode()
        if method == "getblockheader":
            return dumps(chain.block_header(parse_hash(args[0], "blockhash"), args[1])).encode()
        if method == "getblockcount":
            return json.dumps(chain.tip_height).encode()
        if method == "getbestblockhash":
            return json.dumps(chain.tip.hash).encode()
        if method == "getblockchaininfo":
            return dumps(chain.blockchain_info()).encode()
        if method == "getnetworkinfo":
            return dumps(NETWORK_INFO).encode()
        if method == "simmine":
            return json.dumps(chain.mine(args[0])).encode()
        if method == "simreorg":
            return json.dumps(chain.reorg(args[0], args[1])).encode()
        if method == "simsetfail":
            with self._fail_lock:
                self.fail_next = args[0]
            return b"null"
        with chain.lock:  # simstatus
            return json.dumps(
                {"tip_height": chain.tip_height, "tip_hash": chain.tip.hash, "blocks": len(chain.by_height)}
            ).encode()


# getnetworkinfo: the version fields of the Bitcoin Core sim-node imitates: 29, so a loader reads getblock at
# verbosity 3 (from Core 23.0 on), whose prevouts sim-node gives for every kind of chain (raw: from the UTXO set
# it keeps; synthetic: the real earlier outputs their inputs spend, synthetic.py).
NETWORK_INFO = {
    "version": 290000,
    "subversion": "/Satoshi:29.0.0(sim-node)/",
    "protocolversion": 70016,
    "localservices": "0000000000000409",
    "localrelay": True,
    "timeoffset": 0,
    "networkactive": True,
    "connections": 0,
    "connections_in": 0,
    "connections_out": 0,
    "networks": [],
    "relayfee": Decimal("0.00001000"),
    "incrementalfee": Decimal("0.00001000"),
    "localaddresses": [],
    "warnings": [],
}


# Core's methods that sim-node serves (help: the first lines of Core's `help <method>`), then its own.
METHODS = {
    "getblock": Method(
        'getblock "blockhash" ( verbosity )\n\n'
        "If verbosity is 0, returns a string that is serialized, hex-encoded data for block 'hash'.\n"
        "If verbosity is 1, returns an Object with information about block <hash>.",
        (Arg("blockhash", "string"), Arg("verbosity|verbose", "verbosity", optional=True, default=1)),
    ),
    "getblockhash": Method(
        "getblockhash height\n\nReturns hash of block in best-block-chain at height provided.",
        (Arg("height", "int"),),
    ),
    "getblockheader": Method(
        'getblockheader "blockhash" ( verbose )\n\n'
        "If verbose is false, returns a string that is serialized, hex-encoded data for blockheader 'hash'.\n"
        "If verbose is true, returns an Object with information about blockheader <hash>.",
        (Arg("blockhash", "string"), Arg("verbose", "bool", optional=True, default=True)),
    ),
    "getblockcount": Method(
        "getblockcount\n\nReturns the height of the most-work fully-validated chain.\nThe genesis block has height 0."
    ),
    "getbestblockhash": Method(
        "getbestblockhash\n\nReturns the hash of the best (tip) block in the most-work fully-validated chain."
    ),
    "getblockchaininfo": Method(
        "getblockchaininfo\n\nReturns an object containing various state info regarding blockchain processing."
    ),
    "getnetworkinfo": Method(
        "getnetworkinfo\nReturns an object containing various state info regarding P2P networking."
    ),
    "simmine": Method(
        "simmine ( nblocks )\n\nsim-node: mine synthetic blocks on the tip.",
        (Arg("nblocks", "int", optional=True, default=1),),
    ),
    "simreorg": Method(
        "simreorg depth ( extra )\n\nsim-node: replace the top depth blocks by depth + extra new ones.",
        (Arg("depth", "int"), Arg("extra", "int", optional=True, default=1)),
    ),
    "simsetfail": Method(
        "simsetfail count\n\nsim-node: answer the next count non-sim requests with HTTP 500 text/html.",
        (Arg("count", "int"),),
    ),
    "simstatus": Method("simstatus\n\nsim-node: tip height, tip hash, block count."),
}


def _on_rpc_path(path: str) -> bool:
    return path == "/" or path.startswith("/wallet/")  # Core's two JSON-RPC handlers


def _is_admin(raw: bytes) -> bool:
    """A single sim* call (the tests' controls), which injected failures never hit."""
    try:
        request = json.loads(raw)
    except ValueError:
        return False
    return isinstance(request, dict) and str(request.get("method", "")).startswith("sim")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    node: SimNodeServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        return

    def _send(self, status: int, body: bytes | None, content_type: str = "application/json") -> None:
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _refuse(self, status: int, text: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Core's HTTP-level refusals (from libevent): text/html; charset=ISO-8859-1, empty or a short text."""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/html; charset=ISO-8859-1")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not _on_rpc_path(self.path):
            self._refuse(404)
        elif not self.node.authorized(self.headers.get("Authorization")):
            self._refuse(401, headers={"WWW-Authenticate": 'Basic realm="jsonrpc"'})
        else:
            self._refuse(405, b"JSONRPC server handles only POST requests")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not _on_rpc_path(self.path):
            self._refuse(404)
            return
        if not self.node.authorized(self.headers.get("Authorization")):
            self._refuse(401, headers={"WWW-Authenticate": 'Basic realm="jsonrpc"'})
            return
        if not _is_admin(raw) and self.node.take_failure():  # simsetfail: a broken proxy in front of Core
            self._send(500, b"<html>sim-node: injected failure</html>", "text/html")
            return
        status, body = answer(raw, self.node.dispatch)
        self._send(status, body)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mqnode sim-node", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18443, help="0 picks a free port")
    parser.add_argument("--rpc-user")
    parser.add_argument("--rpc-password")
    parser.add_argument("--cookie-file", type=Path, help="write a Core-style cookie (__cookie__:<hex>) here")
    parser.add_argument(
        "--blocks-dir",
        type=Path,
        action="append",
        default=[],
        help="getblock verbosity-2 JSON files (*.json); heights may have gaps",
    )
    parser.add_argument(
        "--raw-blocks",
        action="append",
        default=[],
        metavar="FILE[@HEIGHT]",
        help="blk*.dat-framed or single raw blocks; repeatable",
    )
    parser.add_argument(
        "--chain",
        default="main",
        choices=sorted(HALVING_INTERVAL),
        help="the network getblockchaininfo reports (main: recorded and raw mainnet blocks); synthetic blocks"
        " follow its subsidy halving interval (regtest: 150 blocks)",
    )
    parser.add_argument("--synthetic", action="store_true", help="generate --count synthetic blocks")
    parser.add_argument("--start-height", type=int, default=840_000)
    parser.add_argument("--start-time", help="ISO time of the first synthetic block without a parent")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument(
        "--until", help="instead of --count: synthetic blocks while their time is <= this ISO time (or 'now')"
    )
    parser.add_argument("--txs-per-block", type=int, default=2500)
    parser.add_argument(
        "--block-spacing",
        type=int,
        default=600,
        help="mean seconds between synthetic blocks (their coins' ages are drawn in seconds: a short chain of"
        " long spacing holds coins of many age bands)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mine-every", type=float, help="mine one synthetic block every SECONDS")
    parser.add_argument("--cache-blocks", type=int, default=256, help="rendered getblock responses kept")
    parser.add_argument(
        "--render-cache",
        type=Path,
        help="also keep every rendered getblock response as a file in this directory and serve it from there"
        " (benchmarks: a long synthetic chain is rendered once)",
    )
    parser.add_argument("--ready-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--quiet", action="store_true")
    return parser


def _iso_seconds(text: str) -> int:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def build_chain(args: argparse.Namespace) -> SimChain:
    chain = SimChain(
        seed=args.seed,
        txs_per_block=args.txs_per_block,
        cache_blocks=args.cache_blocks,
        network=args.chain,
        render_dir=args.render_cache,
        spacing=args.block_spacing,
    )
    for directory in args.blocks_dir:
        files = sorted(directory.glob("*.json"))
        if not files:
            raise SystemExit(f"--blocks-dir {directory}: no *.json files")
        loaded = []
        for path in files:
            try:
                loaded.append(json.loads(path.read_text()).get("height"))
            except (ValueError, AttributeError):
                continue
        for _, path in sorted(zip(loaded, files, strict=True), key=lambda p: (p[0] is None, p[0] or 0)):
            chain.add_recorded(path)
    for spec in args.raw_blocks:
        path_text, _, height_text = spec.partition("@")
        chain.add_raw_file(Path(path_text), int(height_text) if height_text else None)
    if args.synthetic:
        start_time = None
        if args.start_time:
            start_time = _iso_seconds(args.start_time)
        if args.until:
            until = time.time() if args.until == "now" else _iso_seconds(args.until)
            chain.add_synthetic_until(int(until), args.start_height, start_time)
        else:
            chain.add_synthetic(args.count, args.start_height, start_time)
    if not chain.by_height:
        raise SystemExit("sim-node needs blocks: --blocks-dir, --raw-blocks or --synthetic")
    return chain


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    chain = build_chain(args)
    cookie = None
    if args.cookie_file:
        cookie = f"__cookie__:{secrets.token_hex(32)}"
        args.cookie_file.write_text(cookie)
    if args.rpc_user is None and cookie is None:
        print("sim-node: warning: no --rpc-user/--rpc-password or --cookie-file; accepting any client", file=sys.stderr)
    server = SimNodeServer(chain, args.host, args.port, args.rpc_user, args.rpc_password, cookie).start()
    if args.mine_every:
        server.mine_every(args.mine_every)
    tip = chain.tip
    print(f"sim-node listening on {server.url} (tip {tip.height} {tip.hash})", flush=True)
    if args.ready_file:
        args.ready_file.write_text(str(server.port))
    stop = threading.Event()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
