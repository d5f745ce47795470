"""A local PostgreSQL server under a directory of ours: the embedded default and the test server.

PostgreSQL refuses to run as root, so when we are root the server runs as the unprivileged
``postgres`` user (``runuser``) and its directory is handed to that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
SERVER_USER = "postgres"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be set up or started."""


def find_pg_bin() -> Path:
    """Directory of initdb/pg_ctl: $MQNODE_PG_BIN, else the newest Debian PostgreSQL >= 15."""
    configured = os.environ.get("MQNODE_PG_BIN")
    candidates = [configured] if configured else list(PG_BIN_CANDIDATES)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise EmbeddedPostgresError(
        "PostgreSQL server binaries not found (looked in "
        + ", ".join(c for c in candidates if c)
        + "); install postgresql-15 (apt-get install postgresql-15) or set MQNODE_PG_BIN"
    )


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVER_USER, "--", *cmd]
    return cmd


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in ``base_dir`` (data in base_dir/data, socket and log beside it)."""

    base_dir: Path
    port: int
    database: str = "mqnode"
    #: extra server settings, e.g. {"shared_preload_libraries": "timescaledb"} (tests' TimescaleDB cluster)
    server_settings: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(path, user.pw_uid, user.pw_gid)

    def initialise(self) -> None:
        """Create the cluster if it does not exist yet (trust auth on loopback only)."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.base_dir)
        if os.geteuid() == 0:
            reachable = subprocess.run(_as_server_user(["test", "-w", str(self.base_dir)]), check=False)
            if reachable.returncode != 0:
                raise EmbeddedPostgresError(
                    f"the '{SERVER_USER}' user cannot reach {self.base_dir} (a parent directory is private?);"
                    " set MQNODE_EMBEDDED_DIR to a directory it can reach, e.g. /var/tmp/mqnode"
                )
        self.data_dir.mkdir(exist_ok=True)
        self._chown(self.data_dir)
        os.chmod(self.data_dir, 0o700)
        initdb = str(find_pg_bin() / "initdb")
        result = subprocess.run(
            _as_server_user(
                [initdb, "-D", str(self.data_dir), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")

    def is_running(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout_sec: float = 60.0) -> None:
        """Start the server (no-op when it already answers) and create the database."""
        self.initialise()
        if not self.is_running():
            pg_ctl = str(find_pg_bin() / "pg_ctl")
            log = self.log_file
            if not log.exists():
                log.touch()
                self._chown(log)
            options = (
                f"-p {self.port} -k {self.base_dir} -c listen_addresses=127.0.0.1 -c fsync=on"
                " -c max_connections=100 -c shared_buffers=256MB"
            ) + "".join(f" -c {name}={value}" for name, value in self.server_settings.items())
            result = subprocess.run(
                _as_server_user(
                    [
                        pg_ctl,
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(log),
                        "-o",
                        options,
                        "-w",
                        "-t",
                        str(int(timeout_sec)),
                        "start",
                    ]
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise EmbeddedPostgresError(f"pg_ctl start failed: {result.stderr.strip()}\n{tail}")
        deadline = time.monotonic() + timeout_sec
        while not self.is_running():
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(f"PostgreSQL on port {self.port} did not answer")
            time.sleep(0.2)
        self.create_database(self.database)

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            return
        pg_ctl = str(find_pg_bin() / "pg_ctl")
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            text=True,
            check=False,
        )

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
