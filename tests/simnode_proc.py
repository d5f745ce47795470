"""sim-node as a real subprocess for tests: started with CLI arguments, stopped (or killed) by the test."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.btc.rpc import BitcoinRpc, RpcConfig

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
EARLY_CHAIN = FIXTURES / "bitcoinj-raw-blocks" / "blk_mainnet_0_to_438.dat"
# The console script beside this interpreter (.venv/bin/mqnode): tests start sim-node as README documents it.
MQNODE = str(Path(sys.executable).with_name("mqnode"))
RPC_USER = "tester"
RPC_PASSWORD = "secret"


class SimNodeProcess:
    """One `mqnode sim-node` process on a free port."""

    def __init__(self, *args: str, port: int = 0):
        self.workdir = Path(tempfile.mkdtemp(prefix="simnode-"))
        self.ready_file = self.workdir / "port"
        self.args = list(args)
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> SimNodeProcess:
        if self.ready_file.exists():
            self.ready_file.unlink()
        cmd = [
            MQNODE,
            "sim-node",
            "--port",
            str(self.port),
            "--rpc-user",
            RPC_USER,
            "--rpc-password",
            RPC_PASSWORD,
            "--ready-file",
            str(self.ready_file),
            "--quiet",
            *self.args,
        ]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while not (self.ready_file.exists() and self.ready_file.read_text().strip()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"sim-node exited: {self.proc.stderr.read()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("sim-node did not start")
            time.sleep(0.05)
        self.port = int(self.ready_file.read_text().strip())
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rpc(self, retries: int = 2, backoff: float = 0.05, timeout: float = 30.0) -> BitcoinRpc:
        return BitcoinRpc(
            RpcConfig(self.url, RPC_USER, RPC_PASSWORD, timeout_sec=timeout, retries=retries, backoff_sec=backoff)
        )

    def env(self) -> dict[str, str]:
        return {
            "MQNODE_BTC_RPC_URL": self.url,
            "MQNODE_BTC_RPC_USER": RPC_USER,
            "MQNODE_BTC_RPC_PASSWORD": RPC_PASSWORD,
        }

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SimNodeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
