"""Shared set-up of the benchmark scripts: a database to measure on, and a line about the machine."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.embedded_pg import EmbeddedPostgres
from app.migrations import upgrade_database


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, Python {platform.python_version()}"


@contextmanager
def bench_database() -> Iterator[str]:
    """MQNODE_BENCH_DATABASE_URL (migrated here), else a throwaway PostgreSQL cluster."""
    url = os.environ.get("MQNODE_BENCH_DATABASE_URL")
    if url:
        upgrade_database(url)
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="mqnode-bench-"))
    os.chmod(base, 0o755)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = EmbeddedPostgres(base / "cluster", port, database="bench")
    server.start()
    try:
        upgrade_database(server.url)
        yield server.url
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)
