"""The deployment, checked by construction: no Docker engine runs here, so docker-compose.yml,
docker-compose.dev.yml, the Dockerfile, .env.example and deploy/ are parsed and held against the application
(its CLI, the environment names of app.settings.Settings, its routes), and what can run without Docker does:
the database init script against a real PostgreSQL, the API healthcheck against an HTTP server, and the nginx
template through a real nginx where one is installed."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

from app.cli import build_parser
from app.settings import Settings
from tests.conftest import ROOT, free_port

COMPOSE_FILE = ROOT / "docker-compose.yml"
DEV_FILE = ROOT / "docker-compose.dev.yml"
ENV_EXAMPLE = ROOT / ".env.example"
INIT_SCRIPT = ROOT / "deploy" / "db" / "initdb" / "100-mqnode-roles.sh"
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "templates" / "default.conf.template"

SETTINGS_ENV = {f.metadata["env"] for f in fields(Settings)}
APP_ENV = SETTINGS_ENV | {"MQNODE_LOG_LEVEL"}  # the names the application reads
EMBEDDED_ONLY = {"MQNODE_EMBEDDED_DIR", "MQNODE_EMBEDDED_PORT"}  # unused once MQNODE_DATABASE_URL is set
COLLECTOR_ENV = {name for name in SETTINGS_ENV if name.startswith("PRICE_WS_")}
SERVICES = {"db", "migrate", "mqnode", "nginx", "grafana", "collector"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


COMPOSE = load(COMPOSE_FILE)
PROJECT_SERVICES = sorted(name for name, s in COMPOSE["services"].items() if "build" in s)


def service(name: str) -> dict:
    return COMPOSE["services"][name]


# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; $$ is a literal dollar.
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolated_names(text: str) -> set[str]:
    text = text.replace("$$", "")
    return {m.group(1) or m.group(4) for m in _INTERPOLATION.finditer(text)}


def with_defaults(value: str) -> str:
    """A compose value as it comes out with an empty .env: defaults applied, required variables as <NAME>."""

    def replace(m: re.Match) -> str:
        name, op, arg = m.group(1) or m.group(4), m.group(2) or "", m.group(3) or ""
        if op.endswith("-"):
            return arg
        if op.endswith("?"):
            return f"<{name}>"
        return ""

    return _INTERPOLATION.sub(replace, str(value))


def api_port() -> int:
    return int(service("mqnode")["environment"]["MQNODE_API_PORT"])


def published(ports: list[str]) -> dict[int, tuple[str, str]]:
    """container port -> (host address, host port) of short-syntax `ports` entries."""
    out = {}
    for entry in ports:
        parts = with_defaults(entry).split(":")
        host_ip = parts[0] if len(parts) == 3 else ""
        out[int(parts[-1])] = (host_ip, parts[-2])
    return out


def run_is_available() -> bool:
    try:
        build_parser().parse_args(["run"])
    except SystemExit:
        return False
    return True


# --- compose: services, commands, order ---------------------------------------------------------------

# The TimescaleDB the suite runs against: scripts/setup.sh --test builds this release into the test server.
TESTED_TIMESCALEDB = "2.28.3"


def test_db_image_is_the_timescaledb_the_tests_run():
    """Production (docker-compose.yml, PostgreSQL 17) pins the TimescaleDB release the tests build and run."""
    assert re.fullmatch(r"timescale/timescaledb:\d+\.\d+\.\d+-pg\d+", service("db")["image"])
    assert service("db")["image"].split(":")[1].rsplit("-", 1)[0] == TESTED_TIMESCALEDB
    built = set(re.findall(r"timescaledb-(\d+\.\d+\.\d+)\.tar\.gz", (ROOT / "scripts" / "setup.sh").read_text()))
    assert built == {TESTED_TIMESCALEDB}, built
    from app.embedded_pg import find_pg_bin

    try:
        lib = find_pg_bin().parent / "lib"
    except Exception:  # no PostgreSQL server here: nothing installed to compare
        return
    installed = {p.name.removeprefix("timescaledb-").removesuffix(".so") for p in lib.glob("timescaledb-[0-9]*.so")}
    assert not installed or TESTED_TIMESCALEDB in installed, installed


def test_services_images_and_order():
    services = COMPOSE["services"]
    assert set(services) == SERVICES
    assert service("db")["image"] == f"timescale/timescaledb:{TESTED_TIMESCALEDB}-pg17"
    assert PROJECT_SERVICES == ["collector", "migrate", "mqnode"]
    assert all(service(s)["build"] == "." for s in PROJECT_SERVICES)
    for name in ("nginx", "grafana"):
        tag = service(name)["image"].partition(":")[2]
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?(-alpine)?", tag), f"{name}: pin a version, not {tag!r}"
    assert service("grafana")["image"].startswith("grafana/grafana-oss:")

    def condition(name: str, dependency: str) -> str:
        return service(name)["depends_on"][dependency]["condition"]

    assert service("migrate")["command"] == ["db", "upgrade"]
    assert condition("migrate", "db") == "service_healthy"
    assert service("migrate")["restart"] == "no"
    assert condition("mqnode", "migrate") == "service_completed_successfully"
    assert condition("mqnode", "db") == "service_healthy"
    assert condition("nginx", "mqnode") == "service_healthy"
    assert condition("grafana", "db") == "service_healthy"
    assert condition("collector", "migrate") == "service_completed_successfully"
    assert service("collector")["profiles"] == ["collector"]
    assert service("collector")["command"] == ["collector", "binance"]
    for name in SERVICES - {"migrate"}:
        assert service(name)["restart"] == "unless-stopped", name
    assert not any("profiles" in service(s) for s in SERVICES - {"collector"})
    assert set(COMPOSE["volumes"]) == {"pgdata", "grafana-data"}


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_commands_are_valid_mqnode_invocations(name):
    command = service(name)["command"]
    if command[0] == "run" and not run_is_available():
        pytest.skip("`mqnode run` is not in app.cli yet (being written): cannot check the mqnode service's command")
    args = build_parser().parse_args(command)
    assert callable(args.func), name


def test_mqnode_service_runs_everything_in_one_supervised_process():
    mqnode = service("mqnode")
    # The one-shot `migrate` service upgrades the schema before; `run` must not do it again.
    assert mqnode["command"] == ["run", "--skip-upgrade"]
    assert mqnode["init"] is True  # tini reaps the lanes' processes and forwards SIGTERM
    # Docker waits longer than `run` gives its lanes to finish the batch they are in.
    assert int(mqnode["stop_grace_period"].removesuffix("s")) > Settings().run_grace_sec
    if not run_is_available():
        pytest.skip("`mqnode run` is not in app.cli yet (being written)")
    args = build_parser().parse_args(mqnode["command"])
    assert args.command == "run" and args.skip_upgrade


# --- compose: environment -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_environment_names_are_settings_the_app_reads(name):
    env = service(name)["environment"]
    assert set(env) <= APP_ENV, set(env) - APP_ENV
    url = urlsplit(with_defaults(env["MQNODE_DATABASE_URL"]))
    assert (url.username, url.hostname, url.port, url.path) == ("mqnode", "db", 5432, "/mqnode")
    db_env = service("db")["environment"]
    assert url.password == "<MQNODE_DB_PASSWORD>" == with_defaults(db_env["POSTGRES_PASSWORD"])
    assert (url.username, url.path[1:]) == (db_env["POSTGRES_USER"], db_env["POSTGRES_DB"])


def test_every_setting_is_wired_into_the_services():
    """A new Settings field fails here until docker-compose.yml passes it (and .env.example lists it)."""
    mqnode = set(service("mqnode")["environment"])
    collector = set(service("collector")["environment"])
    assert mqnode >= APP_ENV - EMBEDDED_ONLY - COLLECTOR_ENV, APP_ENV - EMBEDDED_ONLY - COLLECTOR_ENV - mqnode
    assert collector >= COLLECTOR_ENV | {"MQNODE_DATABASE_URL"}, COLLECTOR_ENV - collector
    assert not (mqnode & COLLECTOR_ENV)


# Settings whose compose value is built from other variables; every other one is passed under its own name.
DERIVED = {
    "MQNODE_DATABASE_URL": {"MQNODE_DB_PASSWORD"},
    "MQNODE_API_DATABASE_URL": {"MQNODE_API_DB_PASSWORD"},
    "PRICE_WS_REMOTE_INGEST_TOKEN": {"MQNODE_INTERNAL_INGEST_TOKEN"},
    "MQNODE_API_HOST": set(),
    "MQNODE_API_PORT": set(),
}


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_settings_pass_through_under_their_own_names(name):
    for key, value in service(name)["environment"].items():
        assert interpolated_names(str(value)) == DERIVED.get(key, {key}), (name, key, value)
        if key not in DERIVED:
            assert str(value).startswith(f"${{{key}:-"), (name, key, value)  # empty .env = the app's default


def test_api_service_listens_for_nginx_and_reads_as_mqnode_api():
    env = service("mqnode")["environment"]
    assert env["MQNODE_API_HOST"] == "0.0.0.0"
    url = urlsplit(with_defaults(env["MQNODE_API_DATABASE_URL"]))
    assert (url.username, url.password, url.hostname, url.port, url.path) == (
        "mqnode_api",
        "<MQNODE_API_DB_PASSWORD>",
        "db",
        5432,
        "/mqnode",
    )
    assert "MQNODE_API_DB_PASSWORD" in service("db")["environment"]  # the init script sets that password
    assert "host.docker.internal:host-gateway" in service("mqnode")["extra_hosts"]
    assert with_defaults(env["MQNODE_BTC_RPC_URL"]) == "http://host.docker.internal:8332"
    assert "ports" not in service("mqnode")  # only through nginx (docker-compose.dev.yml publishes it)


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}' if self.status == 200 else b"{}")

    def log_message(self, *args):
        pass


def test_api_healthcheck_hits_health_and_fails_on_an_error_status():
    check = service("mqnode")["healthcheck"]
    assert check["test"][:3] == ["CMD", "python", "-c"]
    code = check["test"][3]
    assert "$" not in code  # compose would interpolate it
    assert f"'http://127.0.0.1:{api_port()}/health'" in code
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        local = code.replace(f"127.0.0.1:{api_port()}", f"127.0.0.1:{server.server_port}")
        for status, exit_code in ((200, 0), (503, 1)):
            _StatusHandler.status = status
            result = subprocess.run([sys.executable, "-c", local], capture_output=True, timeout=30)
            assert result.returncode == exit_code, (status, result.stderr)
    finally:
        server.shutdown()
    assert check["start_period"] and check["retries"] >= 3


def test_db_service_healthcheck_and_init_script():
    db = service("db")
    check = " ".join(db["healthcheck"]["test"])
    # Over TCP: while the init scripts run, the server listens on its socket only.
    assert "pg_isready" in check and "-h 127.0.0.1" in check and "-d mqnode" in check
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]
    mounts = [v for v in db["volumes"] if "/docker-entrypoint-initdb.d" in v]
    # The file, not the directory: the image keeps its TimescaleDB set-up scripts there.
    assert mounts == [f"./{INIT_SCRIPT.relative_to(ROOT)}:/docker-entrypoint-initdb.d/{INIT_SCRIPT.name}:ro"]
    assert os.access(INIT_SCRIPT, os.X_OK)
    assert {"MQNODE_API_DB_PASSWORD", "MQNODE_GRAFANA_DB_PASSWORD"} <= set(db["environment"])


def test_collector_writes_locally_or_pushes_to_the_api():
    from app.api.internal_ingest import ingest_binance_10m

    env = service("collector")["environment"]
    assert with_defaults(env["PRICE_WS_OUTPUT_MODE"]) == "local_db"
    route = next(iter(ingest_binance_10m.paths))
    assert with_defaults(env["PRICE_WS_REMOTE_INGEST_URL"]) == f"http://mqnode:{api_port()}{route}"
    assert service("collector")["init"] is True


def test_grafana_service():
    grafana = service("grafana")
    env = grafana["environment"]
    assert with_defaults(env["GF_SECURITY_ADMIN_PASSWORD"]) == "<MQNODE_GRAFANA_ADMIN_PASSWORD>"
    assert with_defaults(env["GF_AUTH_ANONYMOUS_ENABLED"]) == "false"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert published(grafana["ports"])[3000][1] == "3000"
    assert "grafana-data:/var/lib/grafana" in grafana["volumes"]


def test_dev_override_publishes_the_api_and_database_on_loopback():
    dev = load(DEV_FILE)
    assert set(dev) == {"services"} and set(dev["services"]) <= set(COMPOSE["services"])
    assert set(dev["services"]["mqnode"]) == {"ports"}
    assert published(dev["services"]["mqnode"]["ports"]) == {api_port(): ("127.0.0.1", "8000")}
    assert published(dev["services"]["db"]["ports"]) == {5432: ("127.0.0.1", "5432")}


def test_dockerfile_builds_the_command_with_sql_and_alembic_beside_it():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM python:3.11-slim" in dockerfile
    assert 'ENTRYPOINT ["mqnode"]' in dockerfile
    for copy in ("COPY app ./app", "COPY sql ./sql", "COPY alembic ./alembic"):
        assert copy in dockerfile
    assert re.search(r"^COPY .*\balembic\.ini\b.* \./$", dockerfile, re.MULTILINE)
    # Editable install: app.settings.PROJECT_DIR (the parent of app/) is the directory holding sql/ and alembic/.
    assert "pip install --no-cache-dir -e ." in dockerfile
    assert f"EXPOSE {api_port()}" in dockerfile
    assert "USER nobody" in dockerfile


# --- .env.example -------------------------------------------------------------------------------------


_ENV_LINE = re.compile(r"^(#\s?)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example() -> dict[str, tuple[bool, str]]:
    """NAME -> (set, not commented out; value); each line needs a one-line comment right above it."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    out: dict[str, tuple[bool, str]] = {}
    for i, line in enumerate(lines):
        match = _ENV_LINE.match(line)
        if not match:
            continue
        name = match.group(2)
        assert name not in out, f".env.example lists {name} twice"
        above = lines[i - 1] if i else ""
        assert above.startswith("# ") and not _ENV_LINE.match(above), f".env.example: {name} needs a comment above"
        out[name] = (match.group(1) is None, match.group(3))
    return out


def test_env_example_lists_every_setting_and_compose_variable():
    listed = env_example()
    used = interpolated_names(COMPOSE_FILE.read_text()) | interpolated_names(DEV_FILE.read_text())
    assert set(listed) >= APP_ENV, APP_ENV - set(listed)
    assert used <= set(listed), used - set(listed)
    assert set(listed) <= APP_ENV | used, set(listed) - APP_ENV - used  # nothing stale
    # Required variables (${VAR:?...}) are present and empty: compose refuses to start until they are set.
    required = {m.group(1) for m in _INTERPOLATION.finditer(COMPOSE_FILE.read_text()) if m.group(2) == ":?"}
    assert required == {
        "MQNODE_DB_PASSWORD",
        "MQNODE_API_DB_PASSWORD",
        "MQNODE_GRAFANA_DB_PASSWORD",
        "MQNODE_GRAFANA_ADMIN_PASSWORD",
    }
    for name in required:
        assert listed[name] == (True, ""), name
    # Everything else is commented out, showing the default compose (or the application) uses.
    assert all(not is_set for name, (is_set, _) in listed.items() if name not in required)


# --- the database init script, run for real -----------------------------------------------------------


@pytest.fixture(scope="module")
def roles_server() -> Iterator:
    """A PostgreSQL cluster of this module's own: the script creates cluster-wide roles."""
    from app.embedded_pg import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="mqnode-roles-"))
    os.chmod(base, 0o755)
    server = EmbeddedPostgres(base / "cluster", free_port(), database="mqnode")
    server.start()
    try:
        yield server
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


def run_init_script(server, **passwords: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQNODE_", "PG"))}
    env.update(POSTGRES_USER="postgres", POSTGRES_DB=server.database, PGHOST="127.0.0.1", PGPORT=str(server.port))
    env.update(passwords)
    # As the image runs it (bash), before the migration.
    return subprocess.run(["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_init_script_creates_read_only_login_roles(roles_server):
    from app.migrations import upgrade_database

    passwords = {"MQNODE_API_DB_PASSWORD": "api'pass\"1", "MQNODE_GRAFANA_DB_PASSWORD": "grafana $pass 2"}
    first = run_init_script(roles_server, **passwords)
    assert first.returncode == 0, first.stderr
    upgrade_database(roles_server.url)  # the `migrate` service, after the init script
    again = run_init_script(roles_server, **passwords)  # re-runs are safe
    assert again.returncode == 0 and not again.stderr.strip(), again.stderr
    with psycopg.connect(roles_server.url) as conn:
        roles = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolpassword LIKE 'SCRAM-SHA-256$%'"
                " FROM pg_authid WHERE rolname LIKE 'mqnode\\_%'"
            )
        }
        assert roles["mqnode_reader"][:4] == (False, False, False, False)
        for login in ("mqnode_api", "mqnode_grafana"):
            assert roles[login] == (True, False, False, False, True), login
            (member,) = conn.execute("SELECT pg_has_role(%s, 'mqnode_reader', 'MEMBER')", (login,)).fetchone()
            assert member, login
    for login in ("mqnode_api", "mqnode_grafana"):
        url = roles_server.url.replace("postgres@", f"{login}@")  # trust auth in the test cluster
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT status FROM api.btc_health").fetchone() == ("starting",)
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
            conn.execute("SET ROLE mqnode_reader")  # what the API does on each of its connections
            assert conn.execute("SELECT count(*) FROM api.checkpoints").fetchone() == (0,)
            conn.execute("RESET ROLE")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT 1 FROM core.btc_primitive_10m")
            conn.rollback()
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("CREATE TABLE api.not_allowed (x int)")


def test_init_script_refuses_to_run_without_the_passwords(roles_server):
    result = run_init_script(roles_server, MQNODE_API_DB_PASSWORD="x")
    assert result.returncode != 0 and "MQNODE_GRAFANA_DB_PASSWORD" in result.stderr


# --- nginx --------------------------------------------------------------------------------------------


def nginx_blocks(text: str) -> list:
    """The template as nested (directive words, children) - enough of nginx's syntax for this file."""
    words_re = r"(?:\$\{\w+\}|[^\s{};])+"  # ${VAR} (envsubst) is part of a word, not a block
    tokens = re.findall(rf"'[^']*'|\"[^\"]*\"|[{{}};]|{words_re}", re.sub(r"#[^\n]*", "", text))
    stack: list[list] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == "{":
            block: list = []
            stack[-1].append((words, block))
            stack.append(block)
            words = []
        elif token == "}":
            stack.pop()
        elif token == ";":
            stack[-1].append((words, None))
            words = []
        else:
            words.append(token)
    assert len(stack) == 1 and not words, "unbalanced nginx template"
    return stack[0]


def directives(block: list, name: str) -> list[list[str]]:
    return [words[1:] for words, _ in block if words and words[0] == name]


def location_for(locations: list[tuple[list[str], list]], uri: str) -> list:
    """nginx's choice among prefix locations: an exact '=' match, else the longest prefix."""
    exact = [body for args, body in locations if args[0] == "=" and args[1] == uri]
    if exact:
        return exact[0]
    prefixes = [(args[-1], body) for args, body in locations if args[0] != "=" and uri.startswith(args[-1])]
    return max(prefixes, key=lambda p: len(p[0]))[1]


def internal_routes() -> list[str]:
    from app.api.app import create_app

    paths = [route.path for route in create_app("postgresql://unused/db", None).routes]
    return [p for p in paths if "/internal/" in p]


def test_nginx_template_restricts_the_internal_routes_and_proxies_the_rest():
    nginx = service("nginx")
    assert nginx["volumes"] == ["./deploy/nginx/templates:/etc/nginx/templates:ro"]
    # default.conf.template -> /etc/nginx/conf.d/default.conf: replaces the image's own server on port 80.
    assert sorted(p.name for p in NGINX_TEMPLATE.parent.iterdir()) == ["default.conf.template"]
    assert published(nginx["ports"])[80][1] == "80"
    text = NGINX_TEMPLATE.read_text()
    # envsubst replaces only variables set in the container: the template's must all be set, and nginx's
    # own variables ($host, ...) are lower case so they never collide with the environment.
    env = nginx["environment"]
    names = interpolated_names(text)
    assert {n for n in names if not n.islower()} == set(env)
    assert {n for n in names if n.islower()} == {
        "mqnode_api",
        "host",
        "remote_addr",
        "proxy_add_x_forwarded_for",
        "scheme",
    }
    assert env["MQNODE_API_UPSTREAM"] == f"mqnode:{api_port()}"
    assert with_defaults(env["MQNODE_INTERNAL_ALLOW_CIDR"]) == "127.0.0.1/32"

    (server,) = [body for words, body in nginx_blocks(text) if words == ["server"]]
    assert directives(server, "listen") == [["80", "default_server"]]
    assert directives(server, "set") == [["$mqnode_api", "http://${MQNODE_API_UPSTREAM}"]]
    locations = [(words[1:], body) for words, body in server if words and words[0] == "location"]
    assert all(args[0] in ("=", "^~") or len(args) == 1 for args, _ in locations), "regex locations"
    routes = internal_routes()
    assert "/api/v1/internal/price/source/binance/10m" in routes
    for uri in routes:
        body = location_for(locations, uri)
        rules = [words for words, _ in body if words and words[0] in ("allow", "deny")]
        assert rules == [["allow", "${MQNODE_INTERNAL_ALLOW_CIDR}"], ["deny", "all"]], uri
        assert directives(body, "proxy_pass") == [["$mqnode_api"]], uri
        assert directives(body, "client_max_body_size") == [["8m"]]  # the API accepts 8 MiB bodies
    public = location_for(locations, "/health")
    assert directives(public, "proxy_pass") == [["$mqnode_api"]]
    assert not [w for w, _ in public if w and w[0] in ("allow", "deny")]
    assert location_for(locations, "/api/v1/btc/health") is public


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def render_template(text: str, env: dict[str, str]) -> str:
    """The image's 20-envsubst-on-templates.sh: envsubst restricted to the variables that are set."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: env.get(m.group(1) or m.group(2), m.group(0)),
        text,
    )


def _request(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, data=b"{}"), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.skipif(find_nginx() is None, reason="no nginx binary here (install nginx to run this)")
@pytest.mark.parametrize("allowed", [False, True])
def test_nginx_serves_the_template(tmp_path, allowed):
    """The rendered template in a real nginx, with a stand-in API: the internal route answers only from the
    allowed network; everything else reaches the API."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    _StatusHandler.status = 200
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    conf = render_template(
        NGINX_TEMPLATE.read_text(),
        {
            "MQNODE_API_UPSTREAM": f"127.0.0.1:{upstream.server_port}",
            "MQNODE_INTERNAL_ALLOW_CIDR": "127.0.0.0/8" if allowed else "192.0.2.0/24",
        },
    ).replace("listen 80 ", f"listen 127.0.0.1:{port} ")
    (tmp_path / "default.conf").write_text(conf)
    temp = {name: tmp_path / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {tmp_path / 'nginx.pid'};\nerror_log stderr;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n access_log off;\n client_body_temp_path {temp['body']};\n proxy_temp_path {temp['proxy']};\n"
        f" fastcgi_temp_path {temp['fastcgi']};\n uwsgi_temp_path {temp['uwsgi']};\n scgi_temp_path {temp['scgi']};\n"
        f" include {tmp_path / 'default.conf'};\n}}\n"
    )
    command = [find_nginx(), "-p", str(tmp_path), "-e", "stderr", "-c", str(tmp_path / "nginx.conf")]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        assert _request(base + "/health") == 200
        assert _request(base + "/api/v1/btc/health") == 200
        internal = "/api/v1/internal/price/source/binance/10m"
        expected = 200 if allowed else 403
        # The stand-in answers GET only (501 otherwise): a POST that gets through is a 501 from it.
        assert _request(base + internal, "POST") == (501 if allowed else 403)
        for disguised in ("/api/v1//internal/price/source/binance/10m", "/api/v1/%69nternal/price/source/binance/10m"):
            assert _request(base + disguised) == expected, disguised
    finally:
        proc.terminate()
        proc.wait(10)
        upstream.shutdown()
