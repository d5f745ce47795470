"""Error answers: a 400 names the parameter and what it accepts; an unreachable database is a 503; any other
database error is logged with its message (e.g. the API's login is not a member of mqnode_reader, or the api
views are missing) and answered with a plain 500."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from litestar import Request, Response
from litestar.exceptions import ValidationException

from app.api.pages import MAX_LIMIT

log = logging.getLogger("mqnode.api")

# What each declared query parameter accepts, for the message of a value Litestar refused.
ACCEPTS = {
    "interval": "10m, 1h or 24h (venue prices: 10m only)",
    "order": "asc or desc",
    "format": "json or csv",
    "limit": f"an integer from 1 to {MAX_LIMIT}",
    "start": "an ISO 8601 time such as 2024-01-01T00:00:00Z",
    "end": "an ISO 8601 time such as 2024-01-02T00:00:00Z",
}


def describe(request: Request, problem: Any) -> str:
    if not isinstance(problem, dict) or "key" not in problem:
        return str(problem.get("message", problem) if isinstance(problem, dict) else problem)
    key = problem["key"]
    raw = request.query_params.get(key)
    if key in ACCEPTS:
        return f"invalid {key} {raw!r}: expected {ACCEPTS[key]}"
    return f"invalid {key}: {problem.get('message', 'not accepted')}"


def bad_request(request: Request, exc: ValidationException) -> Response:
    """Litestar's own parameter checks say 'Validation failed for ...': say which parameter and why instead."""
    problems = exc.extra if isinstance(exc.extra, list) else []
    for problem in problems:
        if isinstance(problem, dict) and problem.get("key") == "output_format":
            problem["key"] = "format"  # the Python name of the query parameter `format`
    detail = "; ".join(describe(request, p) for p in problems) if problems else exc.detail
    body: dict[str, Any] = {"status_code": 400, "detail": detail}
    if problems:
        body["extra"] = problems
    return Response(body, status_code=400)


def database_unavailable(request: Request, exc: psycopg.OperationalError) -> Response:
    log.warning("database unavailable for %s %s: %s", request.method, request.url.path, exc)
    return Response({"status_code": 503, "detail": "database unavailable"}, status_code=503)


def database_error(request: Request, exc: psycopg.Error) -> Response:
    log.error("database error for %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return Response({"status_code": 500, "detail": "database error (see the server log)"}, status_code=500)
