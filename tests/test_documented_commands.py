"""Every command line in README.md and docs/*.md, run as written: the `mqnode` console script (and the
scripts, .venv/bin tools, curl, SQL the docs show) in a subprocess, PATH with .venv/bin first, against a real
environment: a fresh PostgreSQL database, a sim-node started by the documented `mqnode sim-node` command,
the fake exchange (tests/fake_exchange.py) behind every venue and a local WebSocket stream for the collector.

What counts as a command line: each line of a ```sh (bash, shell, console) block, and each inline code span
whose first word (after NAME=value assignments) is `mqnode` with arguments, a path under scripts/, .ci/ or
.venv/bin/, one of python, alembic, docker, curl, cp, openssl, psql; or an SQL statement ending in `;`.
(Spans starting with an option, such as `--once`, name an option of the command before them.)

A documented line is a usage: `[x]` optional, `(a | b)` and `a|b` alternatives, upper-case placeholders
(P, H, ISO, NAME, VENUE, L,..), `...` after an option meaning each of its choices, `NAME=...` the test's value
of NAME, `<name>` and N in SQL. Each usage expands into concrete invocations covering every alternative and
every optional part both with and without (VALUES gives each placeholder a value; RUNNERS says how each
command runs and what doing its job is). A line ending in an option that needs a value (`mqnode prices
compose --method`) names that option: its command's --help must list it; NAMES_ONLY lists the lines that
name a command in prose. Long-running commands are started, checked to do their job (a heartbeat, a row,
the API answering), stopped with SIGTERM and must exit 0. NOT_RUN says why a command cannot run here and
what is checked instead. SQL runs as psql would, on TimescaleDB when it names TimescaleDB's own objects.
A new command line the test cannot expand or run fails test_every_command_line_is_known; a documented
command that exits non-zero or prints a usage error fails test_documented_commands_run_as_written.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import psycopg
import pytest
import yaml

from app.cli import build_parser
from tests.conftest import FIXTURES, ROOT, free_port
from tests.simnode_proc import EARLY_CHAIN

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent  # .venv/bin: the console script `mqnode` and the tools beside it
SHELL_FENCES = {"sh", "bash", "shell", "console"}
COMMAND_WORDS = {"mqnode", "python", "alembic", "docker", "curl", "cp", "openssl", "psql"}
RPC_USER, RPC_PASSWORD = "tester", "secret"
RECORDED_BLOCKS = FIXTURES / "js-bitcoin-block"  # getblock JSON files: a --blocks-dir


# --- extraction ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Documented:
    where: str  # file:line
    text: str  # as written (table escapes undone, line breaks inside a span as spaces)


_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def documented_spans() -> list[Documented]:
    """Every fenced shell line and inline code span of README.md and docs/*.md."""
    out = []
    for path in DOCS:
        text = path.read_text()
        name = path.relative_to(ROOT).as_posix()

        def line_of(offset: int, text: str = text) -> int:
            return text.count("\n", 0, offset) + 1

        for fence in _FENCE.finditer(text):
            if fence.group(1).strip() in SHELL_FENCES:
                for i, line in enumerate(fence.group(2).splitlines()):
                    if line.strip() and not line.lstrip().startswith("#"):
                        out.append(Documented(f"{name}:{line_of(fence.start(2)) + i}", line.strip()))
        blanked = _FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)  # same offsets
        for span in _SPAN.finditer(blanked):
            body = " ".join(span.group(2).split())
            in_table = blanked[blanked.rfind("\n", 0, span.start()) + 1 :].lstrip().startswith("|")
            if in_table:
                body = body.replace("\\|", "|")
            out.append(Documented(f"{name}:{line_of(span.start())}", body))
    return out


_ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=\S*")
_SQL = re.compile(r"(SELECT|INSERT|UPDATE|DELETE|WITH|CALL)\b.*;", re.S)


def is_command_line(text: str) -> bool:
    if _SQL.fullmatch(text):
        return True
    words = program_words(text.split())
    if not words:
        return False
    first = words[0]
    if first == "mqnode" or first.endswith("/mqnode"):
        return len(words) > 1  # bare `mqnode` is the program's name
    return first in COMMAND_WORDS or first.startswith(("scripts/", ".ci/", ".venv/bin/"))


def command_lines() -> list[Documented]:
    return [d for d in documented_spans() if is_command_line(d.text)]


# --- usages -> concrete invocations ---------------------------------------------------------------------

# A usage as a tree: ("seq", [nodes]), ("alt", [nodes]) (an optional part: alt of it and an empty seq), ("word", w).
_TOKEN = re.compile(r"[\[\]()]|[^\s\[\]()]+")


def parse_usage(text: str) -> tuple:
    tokens = _TOKEN.findall(text)
    position = 0

    def group(close: str | None) -> tuple:
        nonlocal position
        alternatives: list[list] = [[]]
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == close:
                break
            if token in (")", "]"):
                raise ValueError(f"unbalanced {token!r} in {text!r}")
            if token == "|":
                alternatives.append([])
            elif token == "[":
                alternatives[-1].append(("alt", [group("]"), ("seq", [])]))
            elif token == "(":
                alternatives[-1].append(group(")"))
            elif "|" in token:
                alternatives[-1].append(("alt", [("word", w) for w in token.split("|")]))
            else:
                alternatives[-1].append(("word", token))
        else:
            if close is not None:
                raise ValueError(f"missing {close!r} in {text!r}")
        seqs = [("seq", items) for items in alternatives]
        return seqs[0] if len(seqs) == 1 else ("alt", seqs)

    return group(None)


def _pairs(node: tuple) -> set[tuple[int, int]]:
    kind, body = node
    if kind == "word":
        return set()
    pairs = set().union(*(_pairs(child) for child in body)) if body else set()
    if kind == "alt":
        pairs |= {(id(node), i) for i in range(len(body))}
    return pairs


def _uncovered(node: tuple, todo: set) -> int:
    kind, body = node
    if kind == "word":
        return 0
    count = sum(_uncovered(child, todo) for child in body)
    if kind == "alt":
        count += sum((id(node), i) in todo for i in range(len(body)))
    return count


def _pick(node: tuple, todo: set, used: set) -> list[str]:
    kind, body = node
    if kind == "word":
        return [body]
    if kind == "seq":
        return [word for child in body for word in _pick(child, todo, used)]
    scores = [((id(node), i) in todo) + _uncovered(child, todo) for i, child in enumerate(body)]
    best = scores.index(max(scores))
    used.add((id(node), best))
    return _pick(body[best], todo, used)


def cover(text: str) -> list[list[str]]:
    """Word lists that together take every alternative, and every optional part with and without."""
    tree = parse_usage(text)
    todo = _pairs(tree)
    variants = []
    while True:
        used: set = set()
        variants.append(_pick(tree, todo, used))
        todo -= used
        if not todo:
            return variants


_PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(,\.\.)?|\.\.\.")


def is_placeholder(word: str) -> bool:
    return bool(_PLACEHOLDER.fullmatch(word))


# --- the mqnode argparse tree -------------------------------------------------------------------------


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subcommands here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_paths(parser=None, path=()) -> Iterator[tuple[str, ...]]:
    parser = parser or build_parser()
    for name, child in subparsers(parser).items():
        yield (*path, name)
        yield from command_paths(child, (*path, name))


@cache
def mqnode_parser() -> argparse.ArgumentParser:
    return build_parser()  # looked up, never changed: one for every line


def mqnode_path(words: list[str]) -> tuple[tuple[str, ...], argparse.ArgumentParser]:
    """(subcommand path, its parser) of an mqnode command line's words (the program's name first)."""
    parser, path, i = mqnode_parser(), (), 1
    while i < len(words):
        children = subparsers(parser)
        if words[i] in children:
            parser, path = children[words[i]], (*path, words[i])
        elif not words[i].startswith("-") or children == {}:
            break
        elif _takes_value(parser, words[i]) and "=" not in words[i]:
            i += 1
        i += 1
    return path, parser


def _action(parser: argparse.ArgumentParser, option: str) -> argparse.Action | None:
    return parser._option_string_actions.get(option.split("=", 1)[0])


def _takes_value(parser: argparse.ArgumentParser, option: str) -> bool:
    action = _action(parser, option)
    return action is not None and action.nargs != 0


# --- the environment ----------------------------------------------------------------------------------


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _quote(word: str) -> str:
    if _ASSIGNMENT.fullmatch(word):
        name, value = word.split("=", 1)
        return f"{name}={shlex.quote(value)}"
    return shlex.quote(word)


def program_words(words: list[str]) -> list[str]:
    """The words after any leading NAME=value assignments."""
    i = 0
    while i < len(words) and _ASSIGNMENT.fullmatch(words[i]):
        i += 1
    return words[i:]


def command_key(words: list[str], sql: bool = False) -> str:
    """What runs a command: "mqnode <subcommand path>", the program, or "sql"."""
    if sql:
        return "sql"
    words = program_words(words)
    program = words[0]
    if program == "mqnode" or program.endswith("/mqnode"):
        return " ".join(("mqnode", *mqnode_path(["mqnode", *words[1:]])[0]))
    if program == "python" or program.endswith("/python"):
        module = words[2] if len(words) > 2 and words[1] == "-m" else ""
        return "python -m " + ("bench.*" if module.startswith("bench.") else module)
    if program == "docker":
        return "docker " + words[1]
    return program.removeprefix(".venv/bin/")


@dataclass
class Invocation:
    doc: Documented
    words: list[str]

    @property
    def sql(self) -> bool:
        return bool(_SQL.fullmatch(self.doc.text))

    @property
    def text(self) -> str:
        return self.words[0] if self.sql else " ".join(_quote(w) for w in self.words)

    @property
    def key(self) -> str:
        return command_key(self.words, self.sql)

    @property
    def kind(self) -> str:
        """How the line is checked: help (a --help line: run), mention (it ends in an option that needs a
        value: it names the option), name (listed in NAMES_ONLY), else run."""
        words = program_words(self.words)
        if self.sql or not self.key.startswith("mqnode"):
            return "run"
        if "--help" in words or "-h" in words:
            return "help"
        path, parser = mqnode_path(words)
        if words[-1].startswith("--") and _takes_value(parser, words[-1]):
            return "mention"
        if self.doc.text in NAMES_ONLY:
            return "name"
        return "run"


@dataclass
class Result:
    invocation: Invocation
    returncode: int | None
    stdout: str
    stderr: str
    note: str = ""
    started: float = 0.0  # time.monotonic() when it started


def empty_database(url: str) -> str:
    """`url`'s database dropped and created again, empty: the documented `mqnode db upgrade` migrates it (a
    copy of the test template would lack what CREATE DATABASE ... TEMPLATE does not copy, such as the
    database's search_path). The fixture that made it drops it."""
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    with psycopg.connect(url.replace(f"/{name}", "/postgres", 1), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


@dataclass
class World:
    """One database, one sim-node, one fake exchange, shared by every command (they run in sequence)."""

    database_url: str
    new_database: Callable[[], str]  # another empty database (the demo's)
    timescaledb: Callable[[], str]  # a migrated database on the TimescaleDB engine
    workdir: Path
    exchange: object
    chain_start: datetime
    api_port: int = field(default_factory=free_port)
    node: subprocess.Popen | None = None
    node_url: str = ""
    curls: list[Invocation] = field(default_factory=list)  # waiting for `mqnode serve`
    failures: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MQNODE_", "PRICE_WS_"))}
        env.update(
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            MQNODE_DATABASE_URL=self.database_url,
            MQNODE_BTC_RPC_URL=self.node_url,
            MQNODE_BTC_RPC_USER=RPC_USER,
            MQNODE_BTC_RPC_PASSWORD=RPC_PASSWORD,
            MQNODE_API_PORT=str(self.api_port),
            MQNODE_EMBEDDED_DIR=str(self.workdir / "embedded"),
            MQNODE_EMBEDDED_PORT=str(free_port()),
            MQNODE_BTC_POLL_INTERVAL_SEC="1",
            MQNODE_LANE_INTERVAL_SEC="2",
            MQNODE_PRICE_POLL_INTERVAL_SEC="2",
            # A lane stops after its step (a batch is one transaction): on a loaded machine that can take long.
            MQNODE_RUN_GRACE_SEC="120",
            PRICE_WS_REST_BASE=self.exchange.url,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    # -- running ---------------------------------------------------------------------------------------
    def fail(self, invocation: Invocation, why: str, result: Result | None = None) -> None:
        detail = ""
        if result is not None:
            detail = (
                f"\n  exit {result.returncode}\n  stdout: {result.stdout[-1500:]}\n  stderr: {result.stderr[-2500:]}"
            )
        self.failures.append(
            f"{invocation.doc.where}: `{invocation.doc.text}`\n  ran: {invocation.text}\n  {why}{detail}"
        )

    def check(self, invocation: Invocation, result: Result) -> bool:
        self.ran.append(f"{time.monotonic() - result.started:6.1f}s  {invocation.text}")
        if result.note:
            self.fail(invocation, result.note, result)
            return False
        if "usage:" in result.stderr or "error: unrecognized arguments" in result.stderr:
            self.fail(invocation, "printed a usage error", result)
            return False
        if result.returncode != 0:
            self.fail(invocation, "exited non-zero", result)
            return False
        return True

    def run(self, invocation: Invocation, timeout: float = 180, cwd: Path = ROOT, **env: str) -> Result:
        started = time.monotonic()
        try:
            done = subprocess.run(
                ["bash", "-c", invocation.text],
                cwd=cwd,
                env=self.env(**env),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            result = Result(invocation, done.returncode, done.stdout, done.stderr, started=started)
        except subprocess.TimeoutExpired as exc:
            result = Result(invocation, None, str(exc.stdout or ""), str(exc.stderr or ""), "timed out", started)
        self.check(invocation, result)
        return result

    def run_long(
        self,
        invocation: Invocation,
        ready: Callable[[], bool],
        what: str,
        timeout: float = 120,
        during: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Start it, wait (bounded) until `ready()`, run `during()`, SIGTERM it, expect exit 0."""
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed below)
        started = time.monotonic()
        proc = subprocess.Popen(
            ["bash", "-c", "exec " + invocation.text],
            cwd=ROOT,
            env=self.env(**(env or {})),
            stdout=out,
            stderr=err,
            text=True,
        )
        note = ""
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    note = f"exited before it could {what}"
                    break
                try:
                    if ready():
                        break
                except (OSError, psycopg.Error, ValueError, KeyError):  # not up yet
                    pass
                if time.monotonic() > deadline:
                    note = f"did not {what} within {timeout:.0f}s"
                    break
                time.sleep(0.3)
            if not note and during is not None:
                during()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(180)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    note = note or "did not stop within 180s of SIGTERM"
            out.seek(0)
            err.seek(0)
            result = Result(invocation, proc.returncode, out.read(), err.read(), note, started)
            out.close()
            err.close()
        self.check(invocation, result)
        return result

    # -- the database ----------------------------------------------------------------------------------
    def query(self, sql: str, params: tuple = (), url: str | None = None) -> list[tuple]:
        """Rows of `sql` on the world's database (or `url`)."""
        with psycopg.connect(url or self.database_url, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def timescaledb_job(self) -> int:
        """One of MQNODE's TimescaleDB jobs (a policy on its tables; TimescaleDB's own are below 1000)."""
        sql = "SELECT min(job_id) FROM timescaledb_information.jobs WHERE job_id >= 1000"
        ((job,),) = self.query(sql, url=self.timescaledb())
        assert job is not None, "no TimescaleDB job in the migrated database"
        return job

    def db_now(self) -> datetime:
        return self.query("SELECT clock_timestamp()")[0][0]

    def heartbeat_since(self, lane: str, since: datetime, ok: bool = True) -> bool:
        """A heartbeat of `lane` since `since` (ok: one that reports no error)."""
        return bool(
            self.query(
                "SELECT 1 FROM api.lane_status WHERE lane = %s AND last_heartbeat > %s AND (status = 'ok' OR NOT %s)",
                (lane, since, ok),
            )
        )

    def configure_venues(self) -> None:
        """Every venue fetches from the fake exchange, history from the chain's start (the seeds point at
        the real exchanges); binance stays as seeded (remote) until the documented UPDATE makes it local."""
        patch = {"api_base": self.exchange.url, "historical_start_utc": iso(self.chain_start)}
        patch["min_request_interval_sec"] = 0
        with psycopg.connect(self.database_url) as conn:
            conn.execute(
                "UPDATE core.mq_price_source_registry SET config_json = config_json || %s::jsonb", (json.dumps(patch),)
            )


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


# --- placeholder values -------------------------------------------------------------------------------

# (command key, option before it or None, placeholder) -> value(s) in `world`; a list gives one invocation each.
Value = Callable[["World", argparse.ArgumentParser | None], "str | list[str]"]


def _choices(option: str) -> Value:
    return lambda world, parser: list(_action(parser, option).choices)


VALUES: dict[tuple[str, str | None, str], Value] = {
    ("mqnode db upgrade", None, "REV"): lambda w, p: "head",
    ("mqnode run", "--lanes", "L,.."): lambda w, p: "chain,api",
    ("mqnode demo", "--days", "D"): lambda w, p: "0.05",
    ("mqnode demo", "--mine-every", "S"): lambda w, p: "2",
    ("mqnode demo", "--txs-per-block", "N"): lambda w, p: "5",
    ("mqnode demo", "--port", "P"): lambda w, p: "0",
    ("mqnode demo", "--duration", "S"): lambda w, p: "10",
    ("mqnode btc listen", "--start-height", "H"): lambda w, p: "0",
    ("mqnode btc backfill", "--start-height", "A"): lambda w, p: "0",
    ("mqnode btc backfill", "--end-height", "B"): lambda w, p: "9",
    ("mqnode btc backfill", "--until", "ISO"): lambda w, p: iso(datetime.now(UTC)),
    ("mqnode btc reconcile", "--from-height", "H"): lambda w, p: "5",
    ("mqnode btc build", "--until", "ISO"): lambda w, p: iso(datetime.now(UTC)),
    ("mqnode sim-node", "--port", "P"): lambda w, p: str(free_port()),
    ("mqnode sim-node", "--rpc-user", "U"): lambda w, p: RPC_USER,
    ("mqnode sim-node", "--rpc-password", "W"): lambda w, p: RPC_PASSWORD,
    ("mqnode sim-node", "--blocks-dir", "D"): lambda w, p: str(RECORDED_BLOCKS),
    ("mqnode sim-node", "--raw-blocks", "F"): lambda w, p: str(EARLY_CHAIN),
    ("mqnode sim-node", "--start-height", "H"): lambda w, p: "0",
    ("mqnode sim-node", "--start-time", "ISO"): lambda w, p: iso(w.chain_start),
    ("mqnode sim-node", "--count", "N"): lambda w, p: "3",  # of 2,500 transactions each without --txs-per-block
    ("mqnode sim-node", "--txs-per-block", "N"): lambda w, p: "20",
    ("mqnode sim-node", "--until", "ISO"): lambda w, p: iso(datetime.now(UTC)),
    ("mqnode sim-node", "--mine-every", "S"): lambda w, p: "5",
    ("mqnode prices seed", "--reset", "VENUE"): lambda w, p: "okx",
    ("mqnode prices ingest", "--source", "NAME"): lambda w, p: "coinbase",
    ("mqnode prices compose", "--method", "..."): _choices("--method"),
    ("mqnode prices compose", "--start", "ISO"): lambda w, p: iso(w.chain_start),
    ("mqnode prices compose", "--end", "ISO"): lambda w, p: iso(datetime.now(UTC)),
    ("mqnode prices compose", "--max-deviation", "X"): lambda w, p: "0.02",
    ("mqnode prices compose", "--min-coverage", "X"): lambda w, p: "0.5",
    ("mqnode metrics run", "--metric", "NAME"): lambda w, p: "nvt_raw",
    ("mqnode metrics seed", "--reset", "METRIC"): lambda w, p: "nvt_raw",
    ("mqnode serve", "--host", "H"): lambda w, p: "127.0.0.1",
    ("mqnode serve", "--port", "P"): lambda w, p: str(free_port()),
}
# SQL placeholders (regular expressions); N is a job id of TimescaleDB's (`run_job(N)`).
SQL_VALUES: dict[str, Callable[[World], str]] = {
    r"<name>": lambda w: "nvt_raw",
    r"<interval>": lambda w: "10m",
    r"\bN\b": lambda w: str(w.timescaledb_job()),
}
TIMESCALEDB_SQL = re.compile(r"\btimescaledb_information\.|\brun_job\(")  # runs on a TimescaleDB database
URL_VALUES = {"HOST": lambda w: f"127.0.0.1:{w.api_port}"}  # curl http://HOST/...: where the API listens here


def invocations(doc: Documented, world: World | None) -> list[Invocation]:
    """The concrete invocations of one documented line (world None: only check that every placeholder has
    a value rule)."""
    if _SQL.fullmatch(doc.text):
        text = doc.text
        for pattern, value in SQL_VALUES.items():
            if re.search(pattern, text):
                text = re.sub(pattern, value(world) if world else "0", text)
        left = re.search(r"<\w+>", text)
        if left:
            raise LookupError(f"no value for {left.group(0)}")
        return [Invocation(doc, [text])]
    out = []
    for words in cover(doc.text):
        key = command_key(words)
        parser = mqnode_path(program_words(words))[1] if key.startswith("mqnode") else None
        choices: list[list[str]] = [[]]
        for i, word in enumerate(words):
            assignment = _ASSIGNMENT.fullmatch(word) and "..." in word
            if assignment:
                name = word.split("=", 1)[0]
                values = [f"{name}={world.env()[name]}" if world else word]
            elif key == "curl" and any(h in word for h in URL_VALUES):
                values = [word]
                for name, value in URL_VALUES.items():
                    values = [v.replace(name, value(world)) if world else v for v in values]
            elif is_placeholder(word):
                option = words[i - 1] if i and words[i - 1].startswith("-") else None
                rule = VALUES.get((key, option, word))
                if rule is None:
                    raise LookupError(f"no value for placeholder {word!r} (after {option}) of `{key}`")
                value = rule(world, parser) if world else "?"
                values = value if isinstance(value, list) else [value]
            else:
                values = [word]
            choices = [done + [v] for done in choices for v in values]
        out.extend(Invocation(doc, words) for words in choices)
    return out


# --- runners: how each command runs and what "doing its job" is -----------------------------------------


def _once_or_long(invocation: Invocation, world: World, lane: str, long_flag: str = "--once", invert=False) -> None:
    has = long_flag in invocation.words
    if has != invert:  # one pass
        world.run(invocation)
        return
    since = world.db_now()
    world.run_long(invocation, lambda: world.heartbeat_since(lane, since), f"record a heartbeat of {lane}")


def block_count(url: str, user: str | None = None, password: str | None = None) -> int:
    """getblockcount over plain JSON-RPC (with basic auth when given)."""
    request = urllib.request.Request(url, json.dumps({"id": 1, "method": "getblockcount", "params": []}).encode())
    if user is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]


def run_sim_node(invocation: Invocation, world: World) -> None:
    words = invocation.words
    url = f"http://127.0.0.1:{words[words.index('--port') + 1]}"
    creds = (RPC_USER, RPC_PASSWORD) if "--rpc-user" in words else ()
    world.run_long(invocation, lambda: block_count(url, *creds) >= 0, "answer getblockcount", timeout=90)


def run_backfill(invocation: Invocation, world: World) -> None:
    result = world.run(invocation)
    if result.returncode == 0 and "backfill " not in result.stdout:
        world.fail(invocation, "printed no report line", result)


def run_listen(invocation: Invocation, world: World) -> None:
    _once_or_long(invocation, world, "chain")


def run_prices_ingest(invocation: Invocation, world: World) -> None:
    result = None
    if "--once" in invocation.words:
        result = world.run(invocation)
        if result.returncode == 0 and "candles=" not in result.stdout:
            world.fail(invocation, "fetched no venue", result)
        return
    _once_or_long(invocation, world, "price_ingest")


def run_compose(invocation: Invocation, world: World) -> None:
    _once_or_long(invocation, world, "price_composer", long_flag="--follow", invert=True)


def run_rollups(invocation: Invocation, world: World) -> None:
    _once_or_long(invocation, world, "rollups")


def run_metrics(invocation: Invocation, world: World) -> None:
    _once_or_long(invocation, world, "metrics")


def run_serve(invocation: Invocation, world: World) -> None:
    """Until it answers /health; the curl lines run while it listens on MQNODE_API_PORT (their HOST)."""
    words = invocation.words
    port = words[words.index("--port") + 1] if "--port" in words else str(world.api_port)

    def curl() -> None:
        if port != str(world.api_port):
            return
        for c in world.curls:
            result = world.run(c, timeout=30)
            if result.returncode == 0 and json.loads(result.stdout).get("status") is None:
                world.fail(c, "answered without a status", result)
        world.curls.clear()

    world.run_long(invocation, lambda: http_ok(f"http://127.0.0.1:{port}/health"), "answer /health", during=curl)


def run_collector(invocation: Invocation, world: World) -> None:
    from tests.test_collector import ReplayServer

    stream = ReplayServer()
    world.run_long(
        invocation,
        lambda: world.query("SELECT 1 FROM core.binance_price_10m WHERE data_source_mode = 'websocket'"),
        "write a 10m row from the WebSocket stream",
        env={"PRICE_WS_URL": stream.url},
    )


def run_run(invocation: Invocation, world: World) -> None:
    words = invocation.words
    lanes = words[words.index("--lanes") + 1].split(",") if "--lanes" in words else None
    if lanes is None:
        from app.supervisor import DEFAULT_LANES

        lanes = list(DEFAULT_LANES)
    since = world.db_now()

    def ready() -> bool:
        # The supervisor records the API's heartbeat by asking its /health (an error while it starts).
        return all(world.heartbeat_since(lane, since, ok=lane != "api") for lane in lanes) and (
            "api" not in lanes or http_ok(f"http://127.0.0.1:{world.api_port}/health")
        )

    result = world.run_long(invocation, ready, f"record heartbeats of {', '.join(lanes)}", timeout=180)
    if result.returncode == 0 and "mqnode run: stopped" not in result.stdout:
        world.fail(invocation, "did not say it stopped", result)


def run_demo(invocation: Invocation, world: World) -> None:
    """In its own database and on its own API port (it runs beside the other commands)."""
    # Without MQNODE_BTC_RPC_URL the demo is the simulated world (its own sim-node and replayed candles).
    url, port = world.new_database(), free_port()
    env = {"MQNODE_DATABASE_URL": url, "MQNODE_BTC_RPC_URL": "", "MQNODE_API_PORT": str(port)}
    if "--duration" in invocation.words:
        result = world.run(invocation, timeout=300, **env)
    else:
        result = world.run_long(
            invocation, lambda: http_ok(f"http://127.0.0.1:{port}/health"), "serve the API", timeout=180, env=env
        )
    if result.returncode == 0 and "demo stopped" not in result.stdout:
        world.fail(invocation, "did not say it stopped", result)


def run_curl(invocation: Invocation, world: World) -> None:
    """curl lines wait for `mqnode serve` (run_serve runs them); one still waiting found no API to ask."""
    world.curls.append(invocation)


def check_curls_ran(world: World) -> None:
    for c in world.curls:
        world.fail(c, "no `mqnode serve` on MQNODE_API_PORT ran to answer it")


def run_sql(invocation: Invocation, world: World) -> None:
    """As psql runs it (autocommit), as the owner; TimescaleDB's own objects on a TimescaleDB database."""
    sql = invocation.words[0]
    url = world.timescaledb() if TIMESCALEDB_SQL.search(sql) else world.database_url
    world.ran.append(f"{'':6}   {sql}")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(sql)
            if cursor.description is not None:
                cursor.fetchall()
    except psycopg.Error as exc:
        world.fail(invocation, f"SQL failed: {exc}")


def run_plain(check: Callable[[Result], str | None] | None = None):
    """Runs once; `check` names what is wrong with a successful run's output (None: nothing)."""

    def runner(invocation: Invocation, world: World) -> None:
        result = world.run(invocation)
        problem = check(result) if check and result.returncode == 0 else None
        if problem:
            world.fail(invocation, problem, result)

    return runner


def run_cp(invocation: Invocation, world: World) -> None:
    """`cp .env.example .env` in a copy of the checkout's .env.example (the checkout keeps no .env)."""
    target = world.workdir / "env-copy"
    target.mkdir(exist_ok=True)
    shutil.copy(ROOT / ".env.example", target / ".env.example")
    world.run(invocation, cwd=target)
    if (target / ".env").read_text() != (ROOT / ".env.example").read_text():
        world.fail(invocation, ".env is not a copy of .env.example")


RUNNERS: dict[str, Callable[[Invocation, World], None]] = {
    "mqnode db upgrade": run_plain(lambda r: None if "database at revision" in r.stderr else "no revision line"),
    "alembic": run_plain(),
    "python -m app.settings": run_plain(lambda r: None if "MQNODE_DATABASE_URL" in r.stdout else "no reference"),
    "openssl": run_plain(lambda r: None if re.fullmatch(r"[0-9a-f]{48}\n", r.stdout) else "not 24 random bytes"),
    "cp": run_cp,
    "mqnode prices seed": run_plain(lambda r: None if "mq_price_source_registry" in r.stdout else "no report"),
    "mqnode metrics seed": run_plain(lambda r: None if "metric_registry" in r.stdout else "no report"),
    "mqnode sim-node": run_sim_node,
    "mqnode btc backfill": run_backfill,
    "mqnode btc build": run_plain(lambda r: None if "btc_primitive_10m" in r.stdout else "no report"),
    "mqnode btc reconcile": run_plain(lambda r: None if "reconcile:" in r.stdout else "no report"),
    "mqnode btc listen": run_listen,
    "sql": run_sql,
    "mqnode prices ingest": run_prices_ingest,
    "mqnode prices compose": run_compose,
    "mqnode rollups refresh": run_rollups,
    "mqnode metrics run": run_metrics,
    "curl": run_curl,  # queued for the next `mqnode serve`
    "mqnode serve": run_serve,
    "mqnode collector": run_collector,
    "mqnode run": run_run,
    "mqnode demo": run_demo,
}
ORDER = list(RUNNERS)  # also the order they run in: set-up, chain, prices, derived, API, collector, all of it

# Documented, but not run by this test: why, and what is checked instead (check_not_run).
NOT_RUN = {
    "scripts/run.sh": "installs system packages (apt-get) and reinstalls .venv (scripts/setup.sh) before "
    "`exec .venv/bin/mqnode demo`; the demo is run here as `mqnode demo`, the set-up is what .ci/run does",
    "scripts/test.sh": "it is this test suite (ruff, sqlfluff, pytest in two xdist workers): run by .ci/run, not from "
    "inside itself",
    ".ci/run": "CI's entry point: runs scripts/test.sh, this suite",
    "docker compose": "needs a Docker engine (and the compose plugin); the compose files are checked instead",
    "python -m bench.*": "benchmarks: each measures for minutes by design (docs/benchmarks.md); --help is run",
}


# Lines that name a command in prose ("`mqnode sim-node`: Bitcoin Core JSON-RPC from ...") and cannot run
# as written; their command's --help is run. Written out in full elsewhere, they run there.
NAMES_ONLY = {
    "mqnode sim-node": "needs a block source (--blocks-dir, --raw-blocks or --synthetic)",
    "mqnode prices ingest": "needs --source NAME or --all-enabled",
    "mqnode btc backfill --mode range": "names the mode (benchmarks.md); range needs --start-height and --end-height",
}


def known(inv: Invocation) -> bool:
    return inv.kind != "run" or inv.key in RUNNERS or inv.key in NOT_RUN


# --- the tests ----------------------------------------------------------------------------------------


def test_extraction_finds_the_documented_commands():
    texts = {d.text for d in command_lines()}
    assert "scripts/run.sh" in texts and "scripts/test.sh" in texts  # README's fenced blocks
    assert "mqnode btc build [--until ISO]" in texts  # a table cell
    assert "mqnode prices compose --method median_filtered_v1 --max-deviation 0.02 --min-coverage 0.5" in texts
    assert "docker compose exec db bash /docker-entrypoint-initdb.d/100-mqnode-roles.sh" in texts  # over a line break
    assert "SELECT * FROM api.btc_health;" in texts
    assert not {"mqnode", "mqnode_reader", "--once", "sim-node"} & texts


def test_usage_expansion_covers_alternatives_and_optional_parts():
    variants = [" ".join(v) for v in cover("c (--a X | --b) [--c Y|z] [--d]")]
    # Each variant takes what is not covered yet (ties: the first); three cover everything here.
    assert variants == ["c --a X --c Y --d", "c --b --c z", "c --a X --d"]
    assert cover("mqnode btc build") == [["mqnode", "btc", "build"]]
    with pytest.raises(ValueError):
        parse_usage("mqnode [--once")


def test_every_command_line_is_known():
    """A documented command line this test cannot expand or does not know how to run fails here."""
    problems = []
    for doc in command_lines():
        try:
            for inv in invocations(doc, None):
                if not known(inv):
                    problems.append(f"{doc.where}: `{doc.text}`: no runner for `{inv.key}`")
        except (LookupError, ValueError) as exc:
            problems.append(f"{doc.where}: `{doc.text}`: {exc}")
    assert not problems, "\n".join(problems)


def test_the_checks_fail_what_they_must(tmp_path):
    unknown = Documented("new.md:1", "mqnode frobnicate --fast")
    assert not all(known(inv) for inv in invocations(unknown, None))  # no runner: the docs ran ahead
    with pytest.raises(LookupError, match="WHEN"):
        invocations(Documented("new.md:2", "mqnode btc build --until WHEN"), None)  # a placeholder without value
    with pytest.raises(ValueError):
        invocations(Documented("new.md:3", "mqnode btc build [--until ISO"), None)
    world = World("postgresql://unused/db", str, str, tmp_path, exchange=None, chain_start=datetime.now(UTC))
    world.env = lambda **extra: {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}
    world.run(Invocation(unknown, ["mqnode", "btc", "build", "--bogus"]))
    world.run(Invocation(unknown, ["false"]))
    assert ["printed a usage error" in f for f in world.failures] == [True, False]
    assert "exited non-zero" in world.failures[1]


def test_help_of_every_subcommand():
    paths = [(), *command_paths()]
    assert ("sim-node",) in paths and ("btc", "backfill") in paths
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def run(path: tuple[str, ...]) -> subprocess.CompletedProcess:
        return subprocess.run(["mqnode", *path, "--help"], env=env, capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(4) as pool:
        for path, result in zip(paths, pool.map(run, paths), strict=True):
            assert result.returncode == 0, (path, result.stderr)
            assert result.stdout.startswith(" ".join(("usage: mqnode", *path))), (path, result.stdout[:300])


def check_not_run(key: str, inv: Invocation, world: World) -> None:
    """What can be checked of a command that is not run here."""
    words = [w for w in inv.words if not _ASSIGNMENT.fullmatch(w)]
    if key in ("scripts/run.sh", "scripts/test.sh", ".ci/run"):
        script = ROOT / words[0]
        syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        if syntax.returncode != 0 or not os.access(script, os.X_OK):
            world.fail(inv, f"not an executable bash script: {syntax.stderr}")
        last = [line for line in script.read_text().splitlines() if line.strip()][-1]
        expected = {
            "scripts/run.sh": 'exec .venv/bin/mqnode demo "$@"',
            "scripts/test.sh": 'exec .venv/bin/pytest -q -n "${MQNODE_TEST_WORKERS:-2}" --dist loadfile "$@"',
            ".ci/run": "exec bash scripts/test.sh",
        }[key]
        if last != expected:
            world.fail(inv, f"its last line is {last!r}, not {expected!r} (update the reason in NOT_RUN)")
    elif key == "python -m bench.*":
        world.run(Invocation(inv.doc, [*inv.words, "--help"]), timeout=120)
    elif key == "docker compose":
        files = [words[i + 1] for i, w in enumerate(words) if w == "-f"] or ["docker-compose.yml"]
        merged: dict = {"services": {}}
        for name in files:
            loaded = yaml.safe_load((ROOT / name).read_text())
            for service, spec in loaded["services"].items():
                merged["services"].setdefault(service, {}).update(spec)
        rest = words[2:]
        while rest and rest[0] == "-f":
            rest = rest[2:]
        if (
            shutil.which("docker")
            and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
        ):
            secrets = {n: "x" for n in ("MQNODE_DB_PASSWORD", "MQNODE_API_DB_PASSWORD", "MQNODE_GRAFANA_DB_PASSWORD")}
            secrets["MQNODE_GRAFANA_ADMIN_PASSWORD"] = "x"
            config = [*words[:2], *[a for f in files for a in ("-f", f)], "config", "--quiet"]
            done = subprocess.run(config, cwd=ROOT, env={**os.environ, **secrets}, capture_output=True, text=True)
            if done.returncode != 0:
                world.fail(inv, f"docker compose config: {done.stderr}")
        if rest[:1] == ["up"]:
            for service, spec in merged["services"].items():
                if "build" in spec and not (ROOT / spec["build"] / "Dockerfile").exists():
                    world.fail(inv, f"{service}: no Dockerfile in {spec['build']}")
        elif rest[:1] == ["exec"]:
            service, command = rest[1], rest[2:]
            mounts = [v.split(":") for v in merged["services"][service].get("volumes", [])]
            sources = {target: source for source, target, *_ in (m for m in mounts if len(m) >= 2)}
            script = command[-1]
            if script not in sources:
                world.fail(inv, f"{service} does not mount {script}")
            elif subprocess.run(["bash", "-n", str(ROOT / sources[script])]).returncode != 0:
                world.fail(inv, f"{sources[script]} is not valid bash")
        else:
            world.fail(inv, f"no check for `docker compose {' '.join(rest[:1])}`: add one")


def check_named(inv: Invocation, world: World) -> None:
    """A --help line runs; a mentioned option must be in its command's --help; a bare name's --help runs."""
    words = program_words(inv.words)
    path, _ = mqnode_path(words)
    if inv.kind == "help":
        result = world.run(inv, timeout=60)
    else:
        result = world.run(Invocation(inv.doc, ["mqnode", *path, "--help"]), timeout=60)
    if result.returncode == 0 and not result.stdout.startswith(" ".join(("usage: mqnode", *path))):
        world.fail(inv, "printed no usage", result)
    if inv.kind == "mention" and words[-1] not in result.stdout:
        world.fail(inv, f"`mqnode {' '.join(path)} --help` does not list {words[-1]}", result)


@pytest.fixture
def world(request, pg_url, new_pg_db, tmp_path) -> Iterator[World]:
    from tests.fake_exchange import FakeExchange

    exchange = FakeExchange()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    world = World(
        empty_database(pg_url),
        lambda: empty_database(new_pg_db()),
        cache(lambda: request.getfixturevalue("ts_url")),  # only started when a documented line needs it
        tmp_path,
        exchange,
        chain_start=now - timedelta(minutes=200),
    )
    try:
        yield world
    finally:
        if world.node is not None and world.node.poll() is None:
            world.node.terminate()
            world.node.wait(30)
        exchange.stop()


def start_environment_node(world: World, sim_nodes: list[Invocation]) -> Invocation:
    """The node every chain command talks to: a documented sim-node invocation with credentials and a
    synthetic chain from --start-height at --start-time (the last 200 minutes) that mines on, so the
    listener and `run` see new blocks."""
    wanted = ("--rpc-user", "--synthetic", "--start-height", "--start-time", "--txs-per-block", "--mine-every")
    chosen = next(inv for inv in sim_nodes if all(w in inv.words for w in wanted))
    words = chosen.words
    world.node_url = f"http://127.0.0.1:{words[words.index('--port') + 1]}"
    log = open(world.workdir / "sim-node.log", "w")  # noqa: SIM115 (closed with the process)
    world.node = subprocess.Popen(
        ["bash", "-c", "exec " + chosen.text], cwd=ROOT, env=world.env(), stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            if block_count(world.node_url, RPC_USER, RPC_PASSWORD) >= 0:
                break
        except OSError:
            assert world.node.poll() is None, (world.workdir / "sim-node.log").read_text()
            assert time.monotonic() < deadline, "the environment's sim-node did not answer"
            time.sleep(0.2)
    world.ran.append(chosen.text)
    return chosen


def test_documented_commands_run_as_written(world):
    by_key: dict[str, list[Invocation]] = {}
    named: list[Invocation] = []
    seen: set[str] = set()
    for doc in command_lines():
        for inv in invocations(doc, world):
            normal = re.sub(r"(^| )\.venv/bin/(mqnode|python) ", r"\1\2 ", inv.text)  # PATH has .venv/bin first
            if normal in seen:  # the same invocation documented twice runs once
                continue
            seen.add(normal)
            if inv.kind == "run":
                by_key.setdefault(inv.key, []).append(inv)
            else:
                named.append(inv)
    unknown = set(by_key) - set(RUNNERS) - set(NOT_RUN)
    assert not unknown, f"documented commands without a runner: {unknown}"

    def beside(runner: Callable[[], None]) -> None:
        try:
            runner()
        except Exception as exc:  # a thread's exception is not the test's: record it
            world.failures.append(f"{runner}: {exc!r}")

    # The demos have their own databases, nodes and API ports: they run beside everything else.
    demos = [
        threading.Thread(target=beside, args=(lambda inv=inv: run_demo(inv, world),))
        for inv in by_key.pop("mqnode demo", [])
    ]
    for demo in demos:
        demo.start()
    try:
        with ThreadPoolExecutor(4) as pool:  # independent and short: --help lines, the lines not run here
            checks = [pool.submit(check_named, inv, world) for inv in named]
            checks += [pool.submit(check_not_run, key, inv, world) for key in NOT_RUN for inv in by_key.get(key, [])]
            for check in checks:
                check.result()
        environment = start_environment_node(world, by_key["mqnode sim-node"])
        for key in ORDER:
            for inv in by_key.get(key, []):
                try:
                    if inv is not environment:
                        RUNNERS[key](inv, world)
                    if key in ("mqnode prices seed", "mqnode metrics seed"):
                        world.configure_venues()  # a reset restores the real exchanges' URLs
                except Exception as exc:  # e.g. the database a failed `db upgrade` left empty: go on, report all
                    world.fail(inv, f"raised {exc!r}")
        check_curls_ran(world)
        for demo in demos:
            demo.join(600)
    finally:
        print("\n".join(world.ran))  # what ran, how long each took (shown with a failure)
    assert not world.failures, f"{len(world.failures)} documented command(s) failed:\n\n" + "\n\n".join(world.failures)
