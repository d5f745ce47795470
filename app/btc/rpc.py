"""Bitcoin Core JSON-RPC client on python-bitcoinrpc.

AuthServiceProxy keeps one HTTP connection and is not thread-safe, so every thread gets its own
proxy. Connection errors, timeouts, HTTP 5xx without a JSON-RPC body and Core's warm-up code (-28)
are retried with exponential backoff; a JSON-RPC error from Core (bad height, unknown block) is not.
"""

from __future__ import annotations

import decimal
import gc
import http.client
import json
import logging
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from bitcoinrpc.authproxy import USER_AGENT, AuthServiceProxy, EncodeDecimal, JSONRPCException

from app.progress import StageTimes
from app.settings import Settings

log = logging.getLogger(__name__)

RPC_IN_WARMUP = -28
RETRYABLE_PROXY_CODES = (-342, -343)  # non-JSON HTTP answer (e.g. 502 from a proxy), missing result
TRANSPORT_ERRORS = (OSError, socket.timeout, http.client.HTTPException, ConnectionError)


class BatchItemError(JSONRPCException):
    """One call inside a JSON-RPC batch failed: Core's error object for it, and which call it was."""

    def __init__(self, error: Any, index: int, count: int, method: str, params: Sequence[Any]):
        error = error if isinstance(error, dict) else {"message": str(error)}
        code = error.get("code") if isinstance(error.get("code"), int) else -1
        reason = error.get("message") or str(error)
        where = f"item {index + 1} of {count} in the batch, params {json.dumps(list(params), default=EncodeDecimal)}"
        super().__init__({"code": code, "message": f"{where}: {reason}"})
        self.method = method
        self.index = index
        self.params = list(params)
        self.reason = reason


def _reply_result(reply: Any, what: Callable[[], str]) -> Any:
    """The result of one JSON-RPC reply object, in either of the shapes Bitcoin Core answers.

    JSON-RPC 1.x (Core's answer to requests without ``"jsonrpc": "2.0"``) carries both ``result`` and
    ``error``, one of them null; JSON-RPC 2.0 (Core 28+ for 2.0 requests) carries exactly one of them.
    A non-null ``error`` raises JSONRPCException with Core's code and message.
    """
    if not isinstance(reply, dict):
        raise JSONRPCException({"code": -343, "message": f"{what()}: reply is not a JSON object: {reply!r:.200}"})
    error = reply.get("error")
    if error is not None:
        if not (isinstance(error, dict) and isinstance(error.get("code"), int)):
            error = {"code": -1, "message": str(error)}
        raise JSONRPCException(error)
    if "result" not in reply:
        raise JSONRPCException({"code": -343, "message": f"{what()}: missing JSON-RPC result"})
    return reply["result"]


class _QuietAuthServiceProxy(AuthServiceProxy):
    """AuthServiceProxy that reads Bitcoin Core's answers in both JSON-RPC shapes, without the debug dump.

    - Single calls are sent as python-bitcoinrpc 1.0 sends them (``"version": "1.1"``, no ``jsonrpc``), so
      Core answers JSON-RPC 1.x style: ``result`` and ``error`` (one null), HTTP 500/404 on errors. The
      reply is read by :func:`_reply_result`, which also accepts a 2.0-style reply.
    - ``batch_`` sends JSON-RPC 2.0 items. Core 28+ answers each item 2.0 style: ``result`` OR ``error``,
      never both, HTTP 200 even when items failed. python-bitcoinrpc 1.0 reads ``response['error']`` and
      fails with KeyError on every successful item; here each item is matched to its call by ``id`` and
      a failed item raises :class:`BatchItemError` naming the call (e.g. getblockhash above the tip, -8).
    - python-bitcoinrpc formats ``json.dumps(result)`` for a DEBUG log line on every successful call,
      whether or not DEBUG is enabled: for a 2,500-transaction getblock that re-serialisation costs twice
      the JSON decoding itself. Nothing here does.
    """

    _next_id = 0
    _id_lock = threading.Lock()
    stage_times: StageTimes | None = None  # set by BitcoinRpc: rpc_fetch and json_decode seconds of every call

    @classmethod
    def _new_ids(cls, count: int = 1) -> range:
        """Request ids unique in this process (a batch matches replies to calls by them)."""
        with _QuietAuthServiceProxy._id_lock:
            first = _QuietAuthServiceProxy._next_id + 1
            _QuietAuthServiceProxy._next_id += count
        return range(first, first + count)

    def _post(self, body: str) -> Any:
        url = self._AuthServiceProxy__url
        conn = self._AuthServiceProxy__conn
        self._sent_at = time.perf_counter()
        conn.request(
            "POST",
            url.path,
            body,
            {
                "Host": url.hostname,
                "User-Agent": USER_AGENT,
                "Authorization": self._AuthServiceProxy__auth_header,
                "Content-type": "application/json",
            },
        )
        conn.sock.settimeout(self._AuthServiceProxy__timeout)
        return self._get_response()

    def __call__(self, *args: Any) -> Any:
        method = self._AuthServiceProxy__service_name
        request = {"version": "1.1", "method": method, "params": args, "id": self._new_ids()[0]}
        reply = self._post(json.dumps(request, default=EncodeDecimal))
        return _reply_result(reply, lambda: str(method))

    def batch_(self, rpc_calls: Sequence[Sequence[Any]]) -> list[Any]:
        """Results of ``[[method, *params], ...]`` in call order; the first failed item raises BatchItemError."""
        calls = [(str(call[0]), list(call[1:])) for call in rpc_calls]
        if not calls:
            return []
        ids = self._new_ids(len(calls))
        body = [{"jsonrpc": "2.0", "method": m, "params": p, "id": i} for (m, p), i in zip(calls, ids, strict=True)]
        replies = self._post(json.dumps(body, default=EncodeDecimal))
        if isinstance(replies, dict):  # the request as a whole was refused: one error object, not a list
            _reply_result(replies, lambda: f"batch of {len(calls)} {calls[0][0]}")
            raise JSONRPCException({"code": -343, "message": f"batch of {len(calls)}: answered with one object"})
        if not isinstance(replies, list):
            raise JSONRPCException({"code": -343, "message": f"batch of {len(calls)}: reply is not a JSON array"})
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        results = []
        for index, ((method, params), request_id) in enumerate(zip(calls, ids, strict=True)):
            reply = by_id.get(request_id)
            if reply is None:
                raise JSONRPCException(
                    {"code": -343, "message": f"batch item {index + 1} of {len(calls)}: {method}: no reply with its id"}
                )
            if reply.get("error") is not None:
                raise BatchItemError(reply["error"], index, len(calls), method, params)
            results.append(_reply_result(reply, lambda m=method: m))
        return results

    def _get_response(self) -> Any:
        http_response = self._AuthServiceProxy__conn.getresponse()
        if http_response is None:
            raise JSONRPCException({"code": -342, "message": "missing HTTP response from server"})
        if http_response.getheader("Content-Type") != "application/json":
            status = f"{http_response.status} {http_response.reason}"
            http_response.read()  # keep the connection usable
            raise JSONRPCException({"code": -342, "message": f"non-JSON HTTP response with '{status}' from server"})
        body = http_response.read()
        received = time.perf_counter()
        result = json.loads(body.decode("utf8"), parse_float=decimal.Decimal)
        if self.stage_times is not None:
            # rpc_fetch: request sent -> whole reply read (the node's work and the transfer); json_decode after it.
            self.stage_times.add("rpc_fetch", received - getattr(self, "_sent_at", received))
            self.stage_times.add("json_decode", time.perf_counter() - received)
        return result


class NodeNotRunning(ConnectionError):
    """Core's cookie file is missing: the node is down (retried, and reported, like a refused connection)."""


class RpcError(RuntimeError):
    """A Bitcoin Core RPC call failed for good (after retries, or with a non-retryable error)."""

    def __init__(self, method: str, message: str, code: int | None = None):
        super().__init__(f"{method}: {message}" + (f" (code {code})" if code is not None else ""))
        self.method = method
        self.reason = message
        self.code = code

    def __reduce__(self) -> tuple:  # crosses process boundaries (decode worker processes)
        return (RpcError, (self.method, self.reason, self.code))


@dataclass(frozen=True)
class RpcConfig:
    """Where the node is and how patient to be with it."""

    url: str
    user: str | None = None
    password: str | None = None
    cookie_file: Path | None = None
    timeout_sec: float = 60.0
    retries: int = 5
    backoff_sec: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> RpcConfig:
        return cls(
            url=settings.btc_rpc_url,
            user=settings.btc_rpc_user,
            password=settings.btc_rpc_password,
            cookie_file=settings.btc_rpc_cookie_file,
            timeout_sec=settings.btc_rpc_timeout_sec,
            retries=settings.btc_rpc_retries,
            backoff_sec=settings.btc_rpc_backoff_sec,
        )

    def authenticated_url(self) -> str:
        """The URL with credentials: from the URL itself, else user/password, else Core's cookie file."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"MQNODE_BTC_RPC_URL must be http(s)://host:port, got {self.url!r}")
        user, password = parts.username, parts.password
        if not user:
            if self.user:
                user, password = self.user, self.password or ""
            elif self.cookie_file:
                try:
                    cookie = Path(self.cookie_file).read_text().strip()
                except FileNotFoundError as exc:
                    raise NodeNotRunning(
                        f"no cookie file {self.cookie_file}: Bitcoin Core writes it at start-up and deletes it"
                        " on shutdown, so the node is not running"
                    ) from exc
                except OSError as exc:
                    raise RpcError("auth", f"cannot read cookie file {self.cookie_file}: {exc}") from exc
                user, _, password = cookie.partition(":")
            else:
                raise ValueError(
                    "no RPC credentials: put user:password in MQNODE_BTC_RPC_URL, set MQNODE_BTC_RPC_USER/"
                    "MQNODE_BTC_RPC_PASSWORD, or MQNODE_BTC_RPC_COOKIE_FILE"
                )
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = f"{quote(user, safe='')}:{quote(password or '', safe='')}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))


class BitcoinRpc:
    """Thread-safe facade: one AuthServiceProxy per thread, retries with backoff."""

    def __init__(self, config: RpcConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self._local = threading.local()
        self._sleep = sleep
        self._chain: str | None = None
        # Where calls record their rpc_fetch/json_decode seconds and iter_blocks its transform's ("map");
        # set by the loader while a Progress is shown (chain_sync.ingest_range), else nothing is timed.
        self.stage_times: StageTimes | None = None

    def _proxy(self) -> _QuietAuthServiceProxy:
        proxy = getattr(self._local, "proxy", None)
        if proxy is None:
            # Credentials are read again for every new connection: Core rewrites its cookie on restart.
            self._local.url = self.config.authenticated_url()
            proxy = _QuietAuthServiceProxy(self._local.url, timeout=self.config.timeout_sec)
            self._local.proxy = proxy
        proxy.stage_times = self.stage_times
        return proxy

    def _method(self, proxy: _QuietAuthServiceProxy, method: str) -> _QuietAuthServiceProxy:
        # AuthServiceProxy.__getattr__ would build a plain AuthServiceProxy; keep the quiet one, same connection.
        quiet = _QuietAuthServiceProxy(self._local.url, method, self.config.timeout_sec, proxy._AuthServiceProxy__conn)
        quiet.stage_times = self.stage_times
        return quiet

    def _drop_proxy(self) -> None:
        self._local.proxy = None

    def _with_retries(self, method: str, action: Callable[[AuthServiceProxy], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return action(self._proxy())
            except JSONRPCException as exc:
                self._drop_proxy()
                retryable = exc.code == RPC_IN_WARMUP or exc.code in RETRYABLE_PROXY_CODES
                if "401" in (exc.message or ""):
                    raise RpcError(method, "authentication refused by the node (HTTP 401)", exc.code) from exc
                if not retryable or attempt >= self.config.retries:
                    raise RpcError(method, exc.message or str(exc), exc.code) from exc
                reason = exc.message
            except TRANSPORT_ERRORS as exc:
                self._drop_proxy()
                if attempt >= self.config.retries:
                    raise RpcError(method, f"node unreachable after {attempt + 1} attempts: {exc!r}") from exc
                reason = repr(exc)
            delay = self.config.backoff_sec * (2**attempt)
            attempt += 1
            log.warning("RPC %s failed (%s); retry %d/%d in %.1fs", method, reason, attempt, self.config.retries, delay)
            self._sleep(delay)

    def call(self, method: str, *params: Any) -> Any:
        """One RPC call with retries."""
        return self._with_retries(method, lambda proxy: self._method(proxy, method)(*params))

    def batch(self, method: str, params_list: Sequence[Sequence[Any]]) -> list[Any]:
        """One JSON-RPC batch of the same method, results in request order.

        A failed item (Core's error object inside the batch) raises RpcError naming the item and its
        params, with Core's code; only Core's warm-up code is retried.
        """
        if not params_list:
            return []
        return self._with_retries(method, lambda proxy: proxy.batch_([[method, *p] for p in params_list]))

    def chain(self) -> str:
        """The node's network as getblockchaininfo names it (main, test, testnet4, signet, regtest).

        Asked once per client: a node does not change networks while it runs.
        """
        if self._chain is None:
            self._chain = str(self.call("getblockchaininfo")["chain"])
        return self._chain

    def get_block_count(self) -> int:
        return int(self.call("getblockcount"))

    def get_block_hash(self, height: int) -> str:
        return self.call("getblockhash", height)

    def get_block_hashes(self, heights: Sequence[int], chunk: int = 500) -> list[str]:
        """Batched getblockhash."""
        hashes: list[str] = []
        for i in range(0, len(heights), chunk):
            hashes.extend(self.batch("getblockhash", [[h] for h in heights[i : i + chunk]]))
        return hashes

    def get_block(self, block_hash: str, verbosity: int = 2) -> dict[str, Any]:
        return self.call("getblock", block_hash, verbosity)

    def _rest_connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "rest", None)
        if conn is None:
            parts = urlsplit(self.config.url)
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conn = self._local.rest = kind(parts.hostname, parts.port, timeout=self.config.timeout_sec)
        return conn

    def rest_get(self, path: str) -> bytes:
        """GET ``/rest/<path>`` from Core's REST interface (bitcoind -rest, on the RPC port, no credentials).

        Transport errors and HTTP 5xx are retried like RPC calls; any other answer but 200 raises RpcError
        with Core's text and the HTTP status as its code (404: unknown or pruned block, or REST off).
        """

        def get(_proxy: Any) -> bytes:
            conn = self._rest_connection()
            sent = time.perf_counter()
            try:
                conn.request("GET", f"/rest/{path}")
                response = conn.getresponse()
                body = response.read()
            except BaseException:
                conn.close()
                self._local.rest = None
                raise
            if self.stage_times is not None:
                self.stage_times.add("rpc_fetch", time.perf_counter() - sent)
            if response.status == 200:
                return body
            text = body.decode("utf8", "replace").strip()[:300]
            if response.status >= 500:
                raise JSONRPCException({"code": RETRYABLE_PROXY_CODES[0], "message": f"HTTP {response.status}: {text}"})
            if response.status == 404 and not text:  # Core's own 404s say what was not found; this is no handler
                text = (
                    "the node's REST interface is off: start bitcoind with -rest (rest=1 in bitcoin.conf),"
                    " or set MQNODE_BTC_BLOCK_SOURCE=json"
                )
            raise RpcError(f"rest {path.split('/')[0]}", f"HTTP {response.status}: {text}", response.status)

        return self._with_retries(f"rest {path.split('/')[0]}", get)

    def get_raw_block(self, block_hash: str) -> tuple[dict[str, Any], bytes, bytes]:
        """(getblockheader, the block's bytes, its spent outputs) for rawblock.map_raw_block."""
        header = self.call("getblockheader", block_hash)
        raw = self.rest_get(f"block/{block_hash}.bin")
        return header, raw, self.rest_get(f"spenttxouts/{block_hash}.bin")

    def fetch_block(self, block_hash: str, verbosity: int, source: str) -> Any:
        """getblock's result (source "json"), or get_raw_block's three parts (source "rest")."""
        if source == "rest":
            return self.get_raw_block(block_hash)
        return self.get_block(block_hash, verbosity)

    def iter_blocks(
        self,
        heights: Sequence[int],
        verbosity: int = 2,
        workers: int = 4,
        hash_chunk: int = 500,
        transform: Callable[[dict[str, Any]], Any] | None = None,
        processes: int = 0,
        source: str = "json",
    ) -> Iterator[Any]:
        """getblock for the heights in order, several fetches in flight ahead of the consumer.

        ``source`` "rest" fetches each block as :meth:`get_raw_block`'s parts instead (``verbosity`` unused);
        ``transform`` then takes that tuple (rawblock.map_raw_parts).

        ``transform`` (e.g. the mapper) runs where the block was fetched. With ``processes`` > 0 the
        fetch, JSON decoding and transform run in that many worker processes (each with its own
        connection), so decoding uses more than one core; otherwise ``workers`` threads fetch.
        Hashes are resolved with batched getblockhash just ahead of the fetches, so a caller that
        stops early (a reorg) wastes little.
        """
        if not heights:
            return
        transform = transform or _identity
        if processes > 0:
            executor: ThreadPoolExecutor | ProcessPoolExecutor = ProcessPoolExecutor(
                max_workers=processes,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_init_fetch_process,
                initargs=(self.config, self.stage_times is not None),
            )
            window = processes * 3

            def submit(block_hash: str) -> Future:
                return executor.submit(_fetch_in_process, block_hash, verbosity, transform, source)

            def result_of(future: Future) -> Any:
                value, seconds = future.result()
                if self.stage_times is not None:
                    self.stage_times.merge(seconds)
                return value
        else:
            executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="getblock")
            window = max(1, workers) * 2

            def fetch(block_hash: str) -> Any:
                block = self.fetch_block(block_hash, verbosity, source)
                if self.stage_times is None:
                    return transform(block)
                with self.stage_times.timed("map"):
                    return transform(block)

            def submit(block_hash: str) -> Future:
                return executor.submit(fetch, block_hash)

            def result_of(future: Future) -> Any:
                return future.result()

        pending: list[Future] = []
        hash_queue: list[str] = []
        next_index = 0
        try:
            while next_index < len(heights) or pending:
                while next_index < len(heights) and len(pending) < window:
                    if not hash_queue:
                        hash_queue = self.get_block_hashes(heights[next_index : next_index + hash_chunk])
                    pending.append(submit(hash_queue.pop(0)))
                    next_index += 1
                yield result_of(pending.pop(0))
        finally:
            for future in pending:
                future.cancel()
            executor.shutdown(wait=True, cancel_futures=True)


def _identity(block: dict[str, Any]) -> dict[str, Any]:
    return block


_process_rpc: BitcoinRpc | None = None


def _init_fetch_process(config: RpcConfig, timed: bool = False) -> None:
    global _process_rpc
    _process_rpc = BitcoinRpc(config)
    _process_rpc.stage_times = StageTimes() if timed else None
    gc.disable()  # decoded blocks hold no reference cycles (see chain_sync.ingest_range)


def _fetch_in_process(
    block_hash: str, verbosity: int, transform: Callable[[Any], Any], source: str = "json"
) -> tuple[Any, dict[str, float]]:
    """(transformed block, this call's stage seconds) in a worker process of iter_blocks."""
    block = _process_rpc.fetch_block(block_hash, verbosity, source)
    times = _process_rpc.stage_times
    if times is None:
        return transform(block), {}
    with times.timed("map"):
        value = transform(block)
    return value, times.take()
