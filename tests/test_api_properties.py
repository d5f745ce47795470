"""Schemathesis against the API's own OpenAPI document, through the ASGI app on a populated PostgreSQL
database: generated requests (valid and invalid parameters) never get a 5xx, and every answer matches the
document (status code, content type, body schema, headers). Read routes only: the ingest route writes.

The schema is loaded from the app at import (schemathesis' lazy fixture loader does not work with pytest 9);
the app reads through `app.state.reads`, which the module fixture points at a populated database.
"""

from __future__ import annotations

import asyncio

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.app import create_app
from app.api.database import ReadDatabase
from tests.conftest import fresh_postgres_db
from tests.pipeline import populate

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

APP = create_app("postgresql://unset@127.0.0.1:1/unset", None)
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", APP).include(method="GET")


@pytest.fixture(scope="module", autouse=True)
def populated_reads(pg_server):
    url = fresh_postgres_db(pg_server)
    populate(url)
    APP.state.reads = ReadDatabase(url)
    yield
    asyncio.run(APP.state.reads.close())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_generated_requests_get_documented_answers(case):
    case.call_and_validate(checks=CHECKS)
