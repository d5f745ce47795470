"""A real Bitcoin Core regtest node for tests.

Finding the binaries (:func:`find_bitcoind`): ``MQNODE_TEST_BITCOIND`` (path of ``bitcoind``), else
``bitcoind`` on PATH, else ``../shared/bin/bitcoind`` beside the project. ``bitcoin-cli`` is looked
up next to it. Tests that need a node use the fixtures of ``tests/regtest_chain.py``, which skip with
the reason when no bitcoind is found.

:class:`BitcoinNode`, one ``bitcoind -regtest`` process over a datadir that outlives it::

    node = BitcoinNode(datadir)           # a new or copied datadir; free RPC/P2P ports are picked
    node.start()                          # waits until RPC answers; start(["-prune=1"]) adds arguments
    node.rpc("getblockcount")             # JSON-RPC with Core's cookie; amounts are Decimal
    node.batch([("getblockhash", 1), ("getblockhash", 2)])   # one HTTP request, results in order
    node.mine_block(txs=[raw_hex, ...], time=1700000000)      # setmocktime + generateblock
    node.url, node.cookie_file            # what MQNODE_BTC_RPC_URL / MQNODE_BTC_RPC_COOKIE_FILE take
    node.mqnode_env()                     # those two as a dict for a subprocess environment
    node.restart()                        # stop + start on the same datadir and ports (cookie changes)
    node.stop()                           # clean shutdown (RPC stop, wait for the process)
    node.kill()                           # SIGKILL, for crash tests

RPC failures raise :class:`NodeRpcError` with Core's code and message. ``extra_args`` given to
``start`` are kept for later ``restart`` calls unless new ones are given. ``mine_block`` sets the
node's mock time first (default: 10 minutes after the tip), so a test controls every block's
timestamp, and MQNODE's 10-minute buckets with it; mock time stays set until the node restarts.
Keep block times at most 2 hours ahead of the real clock (mine_block refuses more): Core will not
start again on a datadir holding a block "from the future".
Reorgs: ``node.rpc("invalidateblock", hash)`` then ``mine_block`` (``reconsiderblock`` undoes it); the
disconnected transactions go back to the mempool (the chain builder's have nLockTime 0, so all of
them do), where ``mine_block(txs=[txid, ...])`` or ``rpc("generatetodescriptor", n, desc)`` mine them.
A chain to start from: tests/regtest_chain.py (``session_chain()`` + ``running_node(chain, dir)``).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import time as _time  # mine_block has a parameter named time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED_BIN = ROOT.parent / "shared" / "bin"
ENV_BITCOIND = "MQNODE_TEST_BITCOIND"
RPC_IN_WARMUP = -28
MAX_FUTURE_BLOCK_TIME = 2 * 60 * 60  # Core's limit on a block's time ahead of its clock
# The one address type MQNODE does not care about for coinbases when a test does not say.
DEFAULT_COINBASE_DESCRIPTOR = "raw(51)"  # OP_TRUE: anyone can spend (no key needed)


class NodeRpcError(RuntimeError):
    """Core answered a call with an error object."""

    def __init__(self, method: str, code: int | None, message: str):
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message


def find_bitcoind() -> tuple[Path | None, str]:
    """(path of bitcoind or None, where it was looked for / found)."""
    configured = os.environ.get(ENV_BITCOIND)
    if configured:
        path = Path(configured)
        if path.is_file() and os.access(path, os.X_OK):
            return path, f"{ENV_BITCOIND}={configured}"
        return None, f"{ENV_BITCOIND}={configured} is not an executable file"
    on_path = shutil.which("bitcoind")
    if on_path:
        return Path(on_path), "PATH"
    shared = SHARED_BIN / "bitcoind"
    if shared.is_file() and os.access(shared, os.X_OK):
        return shared, str(SHARED_BIN)
    return None, f"no bitcoind: set {ENV_BITCOIND}, put it on PATH, or in {SHARED_BIN}"


def find_bitcoin_cli() -> Path | None:
    bitcoind, _ = find_bitcoind()
    if bitcoind is None:
        return None
    cli = bitcoind.with_name("bitcoin-cli")
    return cli if cli.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RpcClient:
    """JSON-RPC over one keep-alive HTTP connection, authenticated with Core's cookie file."""

    def __init__(self, port: int, cookie_file: Path):
        self.port = port
        self.cookie_file = cookie_file
        self._conn: http.client.HTTPConnection | None = None
        self._auth: str | None = None
        self._ids = 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._auth = None

    def _post(self, body: Any, timeout: float) -> Any:
        for attempt in (0, 1):  # one reconnect: Core closes idle keep-alive connections
            if self._conn is None:
                # Read on every new connection: Core writes a new cookie at each start.
                self._auth = "Basic " + base64.b64encode(self.cookie_file.read_text().strip().encode()).decode()
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            self._conn.timeout = timeout
            try:
                self._conn.request(
                    "POST",
                    "/",
                    json.dumps(body, default=_json_default),
                    {"Authorization": self._auth, "Content-Type": "application/json"},
                )
                response = self._conn.getresponse()
                data = response.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
                self.close()
                if attempt:
                    raise
                continue
            if response.status == 401:
                self.close()
                raise NodeRpcError("(auth)", None, "HTTP 401: cookie refused")
            return json.loads(data, parse_float=Decimal)
        raise AssertionError("unreachable")

    def _request(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        self._ids += 1
        return {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": list(params)}

    @staticmethod
    def _result(method: str, answer: dict[str, Any]) -> Any:
        error = answer.get("error")  # JSON-RPC 2.0 answers omit it on success
        if error:
            raise NodeRpcError(method, error.get("code"), error.get("message", str(error)))
        return answer.get("result")

    def rpc(self, method: str, *params: Any, timeout: float = 300.0) -> Any:
        return self._result(method, self._post(self._request(method, params), timeout))

    def batch(self, calls: Iterable[Sequence[Any]], timeout: float = 300.0) -> list[Any]:
        """Several calls ``(method, *params)`` in one JSON-RPC batch; results in call order.

        The first failed call raises NodeRpcError.
        """
        requests = [self._request(call[0], call[1:]) for call in calls]
        if not requests:
            return []
        answers = {a["id"]: a for a in self._post(requests, timeout)}
        return [self._result(r["method"], answers[r["id"]]) for r in requests]


class BitcoinNode:
    """One regtest bitcoind over ``datadir`` (see the module docstring)."""

    BASE_ARGS = (
        "-regtest",
        "-server",
        "-listen=0",
        "-fallbackfee=0.0002",
        "-printtoconsole=0",
        "-unsafesqlitesync=1",
        "-rpcthreads=8",
    )

    def __init__(self, datadir: Path, bitcoind: Path | None = None, rpc_port: int | None = None):
        if bitcoind is None:
            bitcoind, reason = find_bitcoind()
            if bitcoind is None:
                raise RuntimeError(reason)
        self.bitcoind = Path(bitcoind)
        self.datadir = Path(datadir)
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.rpc_port = rpc_port or free_port()
        self.p2p_port = free_port()
        self.extra_args: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._client = self.client()

    # ----- process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def cookie_file(self) -> Path:
        return self.datadir / "regtest" / ".cookie"

    @property
    def debug_log(self) -> Path:
        return self.datadir / "regtest" / "debug.log"

    def mqnode_env(self) -> dict[str, str]:
        """The settings that point MQNODE at this node through its cookie."""
        return {"MQNODE_BTC_RPC_URL": self.url, "MQNODE_BTC_RPC_COOKIE_FILE": str(self.cookie_file)}

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, extra_args: Sequence[str] | None = None, timeout: float = 120.0) -> BitcoinNode:
        if self.running:
            raise RuntimeError("node already running")
        if extra_args is not None:
            self.extra_args = list(extra_args)
        if self.cookie_file.exists():  # left by a killed node; a fresh one is written at start
            self.cookie_file.unlink()
        cmd = [
            str(self.bitcoind),
            f"-datadir={self.datadir}",
            f"-rpcport={self.rpc_port}",
            f"-port={self.p2p_port}",
            *self.BASE_ARGS,
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bitcoind exited with {self.proc.returncode}: {self._failure_text()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"bitcoind did not answer RPC within {timeout}s: {self._failure_text()}")
            if self.cookie_file.exists():
                try:
                    self.rpc("getblockcount")
                    return self
                except NodeRpcError as exc:
                    if exc.code != RPC_IN_WARMUP:
                        raise
                except (OSError, http.client.HTTPException, ValueError):
                    self._close()
            time.sleep(0.05)

    def _failure_text(self) -> str:
        stderr = ""
        if self.proc is not None and self.proc.poll() is not None and self.proc.stderr:
            stderr = self.proc.stderr.read()
        log_tail = ""
        if self.debug_log.exists():
            log_tail = "\n".join(self.debug_log.read_text(errors="replace").splitlines()[-15:])
        return f"{stderr.strip()}\n--- debug.log tail:\n{log_tail}"

    def stop(self, timeout: float = 120.0) -> None:
        """Clean shutdown; the datadir can then be copied or started again."""
        if not self.running:
            self._close()
            return
        try:
            self.rpc("stop")
        except (OSError, http.client.HTTPException, NodeRpcError):
            self.proc.send_signal(signal.SIGTERM)
        self._close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"bitcoind did not stop within {timeout}s") from None

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
            self.proc.wait(30)
        self._close()

    def restart(self, extra_args: Sequence[str] | None = None) -> BitcoinNode:
        self.stop()
        return self.start(extra_args)

    def __enter__(self) -> BitcoinNode:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- RPC

    def client(self) -> RpcClient:
        """A new RPC connection of its own (one per thread: a connection is not thread-safe)."""
        return RpcClient(self.rpc_port, self.cookie_file)

    def _close(self) -> None:
        self._client.close()

    def rpc(self, method: str, *params: Any, timeout: float = 300.0) -> Any:
        """One call; raises NodeRpcError with Core's code and message."""
        return self._client.rpc(method, *params, timeout=timeout)

    def batch(self, calls: Iterable[Sequence[Any]], timeout: float = 300.0) -> list[Any]:
        """Several calls ``(method, *params)`` in one JSON-RPC batch; results in call order."""
        return self._client.batch(calls, timeout=timeout)

    # ----- chain helpers

    def tip_time(self) -> int:
        return int(self.rpc("getblockheader", self.rpc("getbestblockhash"))["time"])

    def mine_block(
        self,
        txs: Sequence[str] = (),
        output: str = DEFAULT_COINBASE_DESCRIPTOR,
        time: int | None = None,
        allow_future: bool = False,
    ) -> str:
        """Mine one block holding ``txs`` (raw hex or mempool txids, in order) at header time ``time``.

        Returns its hash. ``time`` defaults to 10 minutes after the tip. ``output`` is the coinbase's
        address or descriptor. generateblock validates every script (consensus rules) but skips the
        mempool's policy, and mines only the transactions given. A block more than 2 hours ahead of
        the real clock makes Core refuse to start on the datadir again ("a block which appears to be
        from the future"), so that is refused unless ``allow_future``.
        """
        block_time = self.tip_time() + 600 if time is None else int(time)
        if not allow_future and block_time > _time.time() + MAX_FUTURE_BLOCK_TIME - 300:
            raise ValueError(
                f"block time {block_time} is more than {MAX_FUTURE_BLOCK_TIME - 300}s ahead of the clock: the node"
                " could not restart on this datadir (pass time=, or allow_future=True)"
            )
        self.rpc("setmocktime", block_time)
        return self.rpc("generateblock", output, list(txs))["hash"]

    def mine_blocks(self, count: int, spacing: int = 600, output: str = DEFAULT_COINBASE_DESCRIPTOR) -> list[str]:
        """``count`` empty blocks, ``spacing`` seconds apart from the tip."""
        start = self.tip_time()
        return [self.mine_block(output=output, time=start + spacing * (i + 1)) for i in range(count)]


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):  # Core takes amounts as strings too: exact, unlike a float
        return int(value) if value == value.to_integral_value() else str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def copy_datadir(source: Path, target: Path) -> Path:
    """Copy a stopped node's datadir (fast: a few tens of MB)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".cookie", ".lock", "debug.log"))
    return target
