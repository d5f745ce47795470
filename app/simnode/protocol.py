"""Bitcoin Core's JSON-RPC framing, answered the way Core 28+ answers it (src/httprpc.cpp, src/rpc/request.cpp).

- A request object with ``"jsonrpc": "2.0"`` gets a JSON-RPC 2.0 reply: ``jsonrpc``, then ``result`` OR
  ``error`` (never both), then ``id``; a failed call is still HTTP 200. Without an ``id`` it is a
  notification: executed, answered with HTTP 204 and no body.
- Any other request object (no ``jsonrpc``, ``"jsonrpc": "1.0"``; python-bitcoinrpc sends
  ``"version": "1.1"``) gets a legacy reply: ``result`` and ``error`` (one of them null), ``id`` only if the
  request had one; a failed call is HTTP 500, 404 for an unknown method, 400 for a malformed request.
- A batch (JSON array) is always HTTP 200 with one reply per item in request order, each item in its own
  version's shape, failures included; notifications get no reply; an all-notification batch is HTTP 204.
  Core parses every item into one reused request object, so an item that is not an object is answered
  with the id and version of the item before it (recorded from Core, reproduced here).
- Named parameters (params as an object) are mapped onto positions; unknown names are refused (-8).
  Too few or too many positional parameters answer Core's help text (-1; here its first lines), wrong
  JSON types answer Core's "Wrong type passed" (-3).
tests/fixtures/bitcoin-core-rpc/answers.json holds Core's own answers; tests/test_simnode.py compares.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.simnode.chain import RpcFailure, dumps

RPC_MISC_ERROR = -1
RPC_TYPE_ERROR = -3
RPC_INVALID_PARAMETER = -8
RPC_INVALID_REQUEST = -32600
RPC_METHOD_NOT_FOUND = -32601
RPC_PARSE_ERROR = -32700

V1_LEGACY = 1
V2 = 2
ABSENT = object()  # a request without "id" (Core: std::nullopt)

INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # Core reads heights and counts with getInt<int>()


@dataclass
class RequestState:
    """Core's JSONRPCRequest: parsed field by field, so a failed parse keeps what was parsed before."""

    id: Any = None  # default: a null id (present), as Core's
    version: int = V1_LEGACY
    method: str = ""
    params: list | dict = field(default_factory=list)

    @property
    def is_notification(self) -> bool:
        return self.id is ABSENT and self.version == V2

    def parse(self, item: Any) -> None:
        """JSONRPCRequest::parse: id, then version, then method, then params."""
        if not isinstance(item, dict):
            raise RpcFailure(RPC_INVALID_REQUEST, "Invalid Request object")
        self.id = item.get("id", ABSENT)
        self.version = V1_LEGACY
        version = item.get("jsonrpc")
        if version is not None:
            if not isinstance(version, str):
                raise RpcFailure(RPC_INVALID_REQUEST, "jsonrpc field must be a string")
            if version == "2.0":
                self.version = V2
            elif version != "1.0":
                raise RpcFailure(RPC_INVALID_REQUEST, "JSON-RPC version not supported")
        method = item.get("method")
        if method is None:
            raise RpcFailure(RPC_INVALID_REQUEST, "Missing method")
        if not isinstance(method, str):
            raise RpcFailure(RPC_INVALID_REQUEST, "Method must be a string")
        self.method = method
        params = item.get("params")
        if params is None:
            params = []
        elif not isinstance(params, list | dict):
            raise RpcFailure(RPC_INVALID_REQUEST, "Params must be an array or object")
        self.params = params


def reply_object(state: RequestState, result: bytes | None, failure: RpcFailure | None) -> bytes:
    """JSONRPCReplyObj: the reply in the request's version, keys in Core's order, compact JSON."""
    parts = [b'"jsonrpc":"2.0"'] if state.version == V2 else []
    if failure is None:
        parts.append(b'"result":' + result)
        if state.version == V1_LEGACY:
            parts.append(b'"error":null')
    else:
        if state.version == V1_LEGACY:
            parts.append(b'"result":null')
        error = {"code": failure.code, "message": failure.message}
        parts.append(b'"error":' + json.dumps(error, ensure_ascii=False, separators=(",", ":")).encode())
    if state.id is not ABSENT:
        parts.append(b'"id":' + dumps(state.id).encode())
    return b"{" + b",".join(parts) + b"}"


Execute = Callable[[str, list | dict], bytes]  # (method, params) -> result JSON text; raises RpcFailure


def _execute(state: RequestState, execute: Execute, catch_errors: bool) -> bytes:
    """JSONRPCExecOne. Without catch_errors (legacy single request) a failure propagates to the HTTP reply."""
    try:
        return reply_object(state, execute(state.method, state.params), None)
    except RpcFailure as failure:
        if not catch_errors:
            raise
        return reply_object(state, None, failure)
    except Exception as exc:  # Core: std::exception -> RPC_MISC_ERROR inside, parse error outside
        if not catch_errors:
            raise RpcFailure(RPC_PARSE_ERROR, str(exc)) from exc
        return reply_object(state, None, RpcFailure(RPC_MISC_ERROR, str(exc)))


def _not_json(literal: str) -> Any:
    raise ValueError(f"{literal} is not JSON")  # Python accepts NaN/Infinity; Core's parser does not


def http_status(failure: RpcFailure) -> int:
    """JSONErrorReply's status for a request that failed as a whole."""
    if failure.code == RPC_INVALID_REQUEST:
        return 400
    if failure.code == RPC_METHOD_NOT_FOUND:
        return 404
    return 500


def answer(body: bytes, execute: Execute) -> tuple[int, bytes | None]:
    """HTTPReq_JSONRPC: (HTTP status, response body) of one POST; body None means no content (204)."""
    state = RequestState()
    try:
        try:
            request = json.loads(body, parse_float=Decimal, parse_constant=_not_json)
        except ValueError:
            raise RpcFailure(RPC_PARSE_ERROR, "Parse error") from None
        if isinstance(request, dict):
            state.parse(request)
            reply = _execute(state, execute, catch_errors=state.version == V2)
            if state.is_notification:
                return 204, None
            return 200, reply + b"\n"
        if isinstance(request, list):
            replies = []
            for item in request:
                try:
                    state.parse(item)
                    reply = _execute(state, execute, catch_errors=True)
                except RpcFailure as failure:
                    reply = reply_object(state, None, failure)
                if not state.is_notification:
                    replies.append(reply)
            if not replies and request:
                return 204, None
            return 200, b"[" + b",".join(replies) + b"]\n"
        raise RpcFailure(RPC_PARSE_ERROR, "Top-level object parse error")
    except RpcFailure as failure:
        return http_status(failure), reply_object(state, None, failure) + b"\n"


# ---- parameters ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arg:
    names: str  # "verbosity|verbose": Core's name with aliases
    kind: str  # string | int | bool | verbosity
    optional: bool = False
    default: Any = None


@dataclass(frozen=True)
class Method:
    help: str  # the first lines of Core's help text (its error for a wrong number of parameters)
    args: tuple[Arg, ...] = ()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _get_int(value: Any) -> int:
    """UniValue::getInt<int>: an integer literal within int range, else Core's runtime error (-1)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise RpcFailure(RPC_TYPE_ERROR, f"JSON value of type {_json_type(value)} is not of expected type number")
    if isinstance(value, Decimal) or not INT_MIN <= value <= INT_MAX:
        raise RpcFailure(RPC_MISC_ERROR, "JSON integer out of range")
    return value


_EXPECTED = {"string": "string", "int": "number", "bool": "bool"}


def bind(method: Method, params: list | dict) -> list[Any]:
    """The call's arguments by position, checked as RPCHelpMan::HandleRequest checks them."""
    if isinstance(params, dict):
        given = dict(params)
        positional: list[Any] = []
        hole = 0
        for arg in method.args:
            name = next((n for n in arg.names.split("|") if n in given), None)
            if name is None:
                hole += 1
                continue
            positional.extend([None] * hole)
            hole = 0
            positional.append(given.pop(name))
        if given:
            raise RpcFailure(RPC_INVALID_PARAMETER, f"Unknown named parameter {next(iter(given))}")
        params = positional
    required = max((i + 1 for i, a in enumerate(method.args) if not a.optional), default=0)
    if not required <= len(params) <= len(method.args):
        raise RpcFailure(RPC_MISC_ERROR, method.help)
    mismatches = {}
    for i, arg in enumerate(method.args[: len(params)]):
        value = params[i]
        if arg.kind == "verbosity" or (arg.optional and value is None):
            continue
        expected = _EXPECTED[arg.kind]
        if _json_type(value) != expected:
            mismatches[f"Position {i + 1} ({arg.names})"] = (
                f"JSON value of type {_json_type(value)} is not of expected type {expected}"
            )
    if mismatches:
        raise RpcFailure(RPC_TYPE_ERROR, "Wrong type passed:\n" + json.dumps(mismatches, indent=4, ensure_ascii=False))
    values = []
    for i, arg in enumerate(method.args):
        value = params[i] if i < len(params) else None
        if value is None:
            values.append(arg.default)
        elif arg.kind == "int":
            values.append(_get_int(value))
        elif arg.kind == "verbosity":  # Core's ParseVerbosity: null -> default, bool -> 0/1, else an int
            values.append(int(value) if isinstance(value, bool) else _get_int(value))
        else:
            values.append(value)
    return values


def parse_hash(value: str, name: str) -> str:
    """ParseHashV: 64 hex digits, returned lower-case."""
    if len(value) != 64:
        raise RpcFailure(RPC_INVALID_PARAMETER, f"{name} must be of length 64 (not {len(value)}, for '{value}')")
    if any(c not in "0123456789abcdefABCDEF" for c in value):
        raise RpcFailure(RPC_INVALID_PARAMETER, f"{name} must be hexadecimal string (not '{value}')")
    return value.lower()
