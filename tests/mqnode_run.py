"""`mqnode run` as a child process for tests: the console script as a user runs it, its output collected,
its lane children found by their command lines, stopped with SIGTERM as an operator stops it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MQNODE = str(Path(sys.executable).with_name("mqnode"))


class MqnodeRun:
    """`mqnode run [args]` with the environment ``env`` (the whole environment of the child)."""

    def __init__(self, env: dict[str, str], *args: str):
        self.proc = subprocess.Popen(
            [MQNODE, "run", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def output(self, last: int | None = None) -> str:
        """Everything it printed, or its last ``last`` lines."""
        return "\n".join(self.lines if last is None else self.lines[-last:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def lane_pid(self, argv_part: str) -> int | None:
        """The pid of the lane child whose command line holds argv_part (e.g. "btc listen")."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid and argv_part in cmdline:
                return int(entry.name)
        return None

    @contextlib.contextmanager
    def lane_paused(self, argv_part: str) -> Iterator[None]:
        """One lane stopped (SIGSTOP) for the duration, then continued where it was."""
        pid = self.lane_pid(argv_part)
        assert pid is not None, f"no lane {argv_part!r} under mqnode run:\n{self.output(60)}"
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, as an operator stops it; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code

    def __enter__(self) -> MqnodeRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            try:
                self.terminate(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
