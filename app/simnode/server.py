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

RPC_METHOD_NOT_FOUND = -32601
RPC_PARSE_ERROR = -32700
RPC_INVALID_PARAMETER = -8


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
    def dispatch(self, method: str, params: list[Any]) -> str | bytes:
        """The JSON text of the result of one call (raises RpcFailure); getblock answers cached bytes."""
        chain = self.chain
        if method == "getblock":
            block_hash = _param(params, 0, str)
            verbosity = params[1] if len(params) > 1 else 1
            if isinstance(verbosity, bool):
                verbosity = int(verbosity)
            return chain.block_json(block_hash, verbosity)
        if method == "getblockhash":
            height = _param(params, 0, int)
            with chain.lock:
                block = chain.by_height.get(height)
                if height < 0 or block is None:
                    raise RpcFailure(RPC_INVALID_PARAMETER, "Block height out of range")
                return json.dumps(block.hash)
        if method == "getblockcount":
            return json.dumps(chain.tip_height)
        if method == "getbestblockhash":
            return json.dumps(chain.tip.hash)
        if method == "getblockchaininfo":
            return dumps(chain.blockchain_info())
        if method == "getblockheader":
            verbose = params[1] if len(params) > 1 else True
            return dumps(chain.block_header(_param(params, 0, str), bool(verbose)))
        if method == "simmine":
            return json.dumps(chain.mine(int(params[0]) if params else 1))
        if method == "simreorg":
            depth = _param(params, 0, int)
            extra = int(params[1]) if len(params) > 1 else 1
            return json.dumps(chain.reorg(depth, extra))
        if method == "simsetfail":
            with self._fail_lock:
                self.fail_next = _param(params, 0, int)
            return "null"
        if method == "simstatus":
            with chain.lock:
                return json.dumps(
                    {"tip_height": chain.tip_height, "tip_hash": chain.tip.hash, "blocks": len(chain.by_height)}
                )
        raise RpcFailure(RPC_METHOD_NOT_FOUND, "Method not found")


def _param(params: list[Any], index: int, kind: type) -> Any:
    if len(params) <= index:
        raise RpcFailure(-1, f"missing parameter {index + 1}")
    value = params[index]
    if kind is int and isinstance(value, Decimal) and value == int(value):
        value = int(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RpcFailure(-3, f"Expected type {kind.__name__}, got {type(value).__name__}")
    return value


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    node: SimNodeServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        return

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.node.authorized(self.headers.get("Authorization")):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="jsonrpc"')
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            request = json.loads(raw, parse_float=Decimal)
        except ValueError:
            self._send(500, _error_body(None, RPC_PARSE_ERROR, "Parse error"))
            return
        is_admin = isinstance(request, dict) and str(request.get("method", "")).startswith("sim")
        if not is_admin and self.node.take_failure():  # simsetfail: answer like a broken proxy in front of Core
            self._send(500, b"<html>sim-node: injected failure</html>", "text/html")
            return
        if isinstance(request, list):
            parts = [self._answer(item)[1] for item in request]
            self._send(200, b"[" + b",".join(parts) + b"]")
            return
        status, body = self._answer(request)
        self._send(status, body)

    def _answer(self, request: Any) -> tuple[int, bytes]:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return 500, _error_body(None, -32600, "Invalid Request object")
        request_id = request.get("id")
        params = request.get("params") or []
        if not isinstance(params, list):
            return 500, _error_body(request_id, -32600, "Params must be an array")
        try:
            result = self.node.dispatch(request["method"], params)
        except RpcFailure as failure:
            status = 404 if failure.code == RPC_METHOD_NOT_FOUND else 500
            return status, _error_body(request_id, failure.code, failure.message)
        if isinstance(result, str):
            result = result.encode()
        return 200, b'{"result":' + result + b',"error":null,"id":' + json.dumps(request_id).encode() + b"}"


def _error_body(request_id: Any, code: int, message: str) -> bytes:
    return json.dumps({"result": None, "error": {"code": code, "message": message}, "id": request_id}).encode()


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
    parser.add_argument("--synthetic", action="store_true", help="generate --count synthetic blocks")
    parser.add_argument("--start-height", type=int, default=840_000)
    parser.add_argument("--start-time", help="ISO time of the first synthetic block without a parent")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument(
        "--until", help="instead of --count: synthetic blocks while their time is <= this ISO time (or 'now')"
    )
    parser.add_argument("--txs-per-block", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mine-every", type=float, help="mine one synthetic block every SECONDS")
    parser.add_argument("--cache-blocks", type=int, default=256, help="rendered getblock responses kept")
    parser.add_argument("--ready-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--quiet", action="store_true")
    return parser


def _iso_seconds(text: str) -> int:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def build_chain(args: argparse.Namespace) -> SimChain:
    chain = SimChain(seed=args.seed, txs_per_block=args.txs_per_block, cache_blocks=args.cache_blocks)
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
