"""docker-compose.yml is checked by construction: no Docker engine runs here, so parse it and hold its
commands and settings against the application (the same CLI and environment names the tests use)."""

from __future__ import annotations

from dataclasses import fields

import yaml

from app.cli import build_parser
from app.settings import Settings
from tests.conftest import ROOT


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_images_and_order():
    services = load_compose()["services"]
    assert services["db"]["image"].startswith("timescale/timescaledb:")
    assert "healthcheck" in services["db"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["btc-listener"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_commands_are_valid_mqnode_invocations():
    parser = build_parser()
    for name, service in load_compose()["services"].items():
        if "build" in service:
            args = parser.parse_args(service["command"])
            assert callable(args.func), name


def test_environment_names_are_settings_the_app_reads():
    known = {f.metadata["env"] for f in fields(Settings)} | {"MQNODE_LOG_LEVEL"}
    for name, service in load_compose()["services"].items():
        if "build" in service:
            env = service["environment"]
            assert "MQNODE_DATABASE_URL" in env and "@db:5432/" in env["MQNODE_DATABASE_URL"], name
            assert set(env) <= known, set(env) - known


def test_dockerfile_entrypoint_is_the_console_script():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mqnode"]' in dockerfile
    assert "COPY sql ./sql" in dockerfile and "COPY alembic ./alembic" in dockerfile
