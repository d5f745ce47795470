"""Settings read from the environment: one dataclass, one line of documentation per field."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
# The canonical price's composition methods (core.btc_price_composition_10m; docs/data-contract.md, Prices).
COMPOSITION_METHODS = ("volume_weighted_ohlc_v1", "median_filtered_v1", "reference_rate_v1")


BLOCK_SOURCES = ("json", "rest")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _env_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Everything MQNODE reads from its environment (see .env.example and docs/configuration.md)."""

    database_url: str | None = field(
        default=None,
        metadata={
            "env": "MQNODE_DATABASE_URL",
            "doc": "PostgreSQL/TimescaleDB URL; unset = embedded PostgreSQL under .mqnode/",
        },
    )
    embedded_dir: Path = field(
        default=PROJECT_DIR / ".mqnode",
        metadata={"env": "MQNODE_EMBEDDED_DIR", "doc": "where the embedded PostgreSQL keeps its data"},
    )
    embedded_port: int = field(
        default=55432, metadata={"env": "MQNODE_EMBEDDED_PORT", "doc": "port of the embedded PostgreSQL"}
    )
    btc_rpc_url: str = field(
        default="http://127.0.0.1:8332",
        metadata={"env": "MQNODE_BTC_RPC_URL", "doc": "Bitcoin Core JSON-RPC URL (may carry user:password@)"},
    )
    btc_rpc_user: str | None = field(
        default=None, metadata={"env": "MQNODE_BTC_RPC_USER", "doc": "RPC user (rpcuser / rpcauth)"}
    )
    btc_rpc_password: str | None = field(
        default=None, metadata={"env": "MQNODE_BTC_RPC_PASSWORD", "doc": "RPC password"}
    )
    btc_rpc_cookie_file: Path | None = field(
        default=None,
        metadata={"env": "MQNODE_BTC_RPC_COOKIE_FILE", "doc": "Core's .cookie file, used when no user/password is set"},
    )
    btc_rpc_timeout_sec: float = field(
        default=60.0, metadata={"env": "MQNODE_BTC_RPC_TIMEOUT_SEC", "doc": "timeout of one RPC call"}
    )
    btc_rpc_retries: int = field(
        default=5,
        metadata={"env": "MQNODE_BTC_RPC_RETRIES", "doc": "retries of a failed RPC call (connection errors, 5xx)"},
    )
    btc_rpc_backoff_sec: float = field(
        default=0.5, metadata={"env": "MQNODE_BTC_RPC_BACKOFF_SEC", "doc": "first retry delay; doubles per retry"}
    )
    btc_fetch_workers: int = field(
        default=4,
        metadata={
            "env": "MQNODE_BTC_FETCH_WORKERS",
            "doc": "getblock requests in flight while earlier blocks are written",
        },
    )
    btc_batch_blocks: int = field(
        default=50, metadata={"env": "MQNODE_BTC_BATCH_BLOCKS", "doc": "blocks written per database transaction"}
    )
    btc_batch_max_tx: int = field(
        default=100_000,
        metadata={"env": "MQNODE_BTC_BATCH_MAX_TX", "doc": "a batch is cut early once it holds this many transactions"},
    )
    btc_decode_processes: int = field(
        default=0,
        metadata={
            "env": "MQNODE_BTC_DECODE_PROCESSES",
            "doc": "worker processes that fetch+decode+map ranges of >= 100 blocks (0 = threads in-process)",
        },
    )
    btc_getblock_verbosity: int = field(
        default=3,
        metadata={
            "env": "MQNODE_BTC_GETBLOCK_VERBOSITY",
            "doc": "3: prevouts for the UTXO and coin-age facts (used when the node is Bitcoin Core >= 23, else 2);"
            " 2: no prevouts (those stay NULL); both give per-tx fee",
        },
    )
    btc_block_source: str = field(
        default="json",
        metadata={
            "env": "MQNODE_BTC_BLOCK_SOURCE",
            "doc": "json: getblock at MQNODE_BTC_GETBLOCK_VERBOSITY; rest: Core's REST raw block + spent outputs"
            " (bitcoind -rest; several times faster, exact fees, no coin-age prevouts: those stay NULL as at"
            " verbosity 2)",
        },
    )
    build_dir: Path = field(
        default=PROJECT_DIR / ".mqnode" / "build",
        metadata={
            "env": "MQNODE_BUILD_DIR",
            "doc": "where the rest source's C decoder (app/btc/raw_decode.c) is built with cffi on first use",
        },
    )
    btc_start_height: int = field(
        default=0,
        metadata={
            "env": "MQNODE_BTC_START_HEIGHT",
            "doc": "first height the listener ingests when no raw checkpoint exists (above 1: supply and UTXO set"
            " start from the node's gettxoutsetinfo below it, which needs -coinstatsindex)",
        },
    )
    btc_poll_interval_sec: float = field(
        default=5.0,
        metadata={"env": "MQNODE_BTC_POLL_INTERVAL_SEC", "doc": "listener sleep when the node has no new block"},
    )
    price_poll_interval_sec: float = field(
        default=60.0, metadata={"env": "MQNODE_PRICE_POLL_INTERVAL_SEC", "doc": "pause between price ingest passes"}
    )
    price_composition_method: str = field(
        default="volume_weighted_ohlc_v1",
        metadata={
            "env": "MQNODE_PRICE_COMPOSITION_METHOD",
            "doc": "default of `mqnode prices compose --method`"
            " (volume_weighted_ohlc_v1, median_filtered_v1 or reference_rate_v1)",
        },
    )
    run_lanes: str = field(
        default="chain,price_ingest,price_composer,rollups,metrics,api",
        metadata={
            "env": "MQNODE_RUN_LANES",
            "doc": "lanes `mqnode run` starts (comma list; also: collector)",
        },
    )
    run_grace_sec: float = field(
        default=30.0,
        metadata={"env": "MQNODE_RUN_GRACE_SEC", "doc": "how long `mqnode run` waits for lanes to stop before killing"},
    )
    run_restart_backoff_sec: float = field(
        default=1.0,
        metadata={
            "env": "MQNODE_RUN_RESTART_BACKOFF_SEC",
            "doc": "`mqnode run`: first delay before a lane that exited is started again; doubles per exit",
        },
    )
    run_max_restart_backoff_sec: float = field(
        default=60.0,
        metadata={
            "env": "MQNODE_RUN_MAX_RESTART_BACKOFF_SEC",
            "doc": "longest restart delay; a lane that ran longer than this starts over at the first delay",
        },
    )
    lane_interval_sec: float = field(
        default=60.0,
        metadata={
            "env": "MQNODE_LANE_INTERVAL_SEC",
            "doc": "longest sleep of the composer, rollup and metric lanes between NOTIFY wake-ups",
        },
    )
    lane_error_backoff_sec: float = field(
        default=5.0,
        metadata={
            "env": "MQNODE_LANE_ERROR_BACKOFF_SEC",
            "doc": "first retry delay of a lane (chain, prices, rollups, metrics) after a failed step;"
            " doubles per failure",
        },
    )
    lane_max_backoff_sec: float = field(
        default=120.0,
        metadata={"env": "MQNODE_LANE_MAX_BACKOFF_SEC", "doc": "longest retry delay of a failing lane"},
    )
    metric_chunk_days: float = field(
        default=30.0,
        metadata={
            "env": "MQNODE_METRIC_CHUNK_DAYS",
            "doc": "days of periods one metric step computes and commits (a first run over years is done in chunks)",
        },
    )
    internal_ingest_token: str | None = field(
        default=None,
        metadata={
            "env": "MQNODE_INTERNAL_INGEST_TOKEN",
            "doc": "bearer token of the internal ingest route (unset: refused)",
        },
    )
    api_host: str = field(
        default="127.0.0.1", metadata={"env": "MQNODE_API_HOST", "doc": "address `mqnode serve` binds"}
    )
    api_port: int = field(default=8000, metadata={"env": "MQNODE_API_PORT", "doc": "port `mqnode serve` listens on"})
    api_database_url: str | None = field(
        default=None,
        metadata={
            "env": "MQNODE_API_DATABASE_URL",
            "doc": "URL of a login role in mqnode_reader for the API's reads; unset = MQNODE_DATABASE_URL + SET ROLE",
        },
    )
    price_ws_source: str = field(
        default="binance", metadata={"env": "PRICE_WS_SOURCE", "doc": "collector venue (binance)"}
    )
    price_ws_symbol: str = field(default="BTCUSDT", metadata={"env": "PRICE_WS_SYMBOL", "doc": "collector symbol"})
    price_ws_child_interval: str = field(
        default="1m", metadata={"env": "PRICE_WS_CHILD_INTERVAL", "doc": "collector kline interval (1m)"}
    )
    price_ws_output_mode: str = field(
        default="local_db", metadata={"env": "PRICE_WS_OUTPUT_MODE", "doc": "local_db or remote_push"}
    )
    price_ws_remote_ingest_url: str | None = field(
        default=None, metadata={"env": "PRICE_WS_REMOTE_INGEST_URL", "doc": "internal ingest route for remote_push"}
    )
    price_ws_remote_ingest_token: str | None = field(
        default=None, metadata={"env": "PRICE_WS_REMOTE_INGEST_TOKEN", "doc": "bearer token for remote_push"}
    )
    price_ws_url: str = field(
        default="wss://stream.binance.com:9443/ws/btcusdt@kline_1m",
        metadata={"env": "PRICE_WS_URL", "doc": "Binance kline stream URL"},
    )
    price_ws_rest_base: str = field(
        default="https://api.binance.com", metadata={"env": "PRICE_WS_REST_BASE", "doc": "REST base for gap repair"}
    )
    require_timescaledb: bool = field(
        default=False,
        metadata={
            "env": "MQNODE_REQUIRE_TIMESCALEDB",
            "doc": "true: `db upgrade` fails unless TimescaleDB can be used (false: plain-PostgreSQL mode, warned)",
        },
    )
    db_write_method: str = field(
        default="auto",
        metadata={
            "env": "MQNODE_DB_WRITE_METHOD",
            "doc": "auto, copy or insert (auto uses COPY except on the PGlite engine)",
        },
    )

    @classmethod
    def from_env(cls) -> Settings:
        """Build settings from os.environ, converting each value to its field's type."""
        values: dict[str, object] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = os.environ.get(name)
            if raw is None or raw == "":
                continue
            if f.type in ("int",):
                values[f.name] = _env_int(name, 0)
            elif f.type in ("float",):
                values[f.name] = _env_float(name, 0.0)
            elif f.type in ("bool",):
                values[f.name] = _env_bool(name, raw)
            elif "Path" in str(f.type):
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw
        settings = cls(**values)
        if settings.btc_getblock_verbosity not in (2, 3):
            raise ValueError("MQNODE_BTC_GETBLOCK_VERBOSITY must be 2 or 3")
        if settings.btc_block_source not in BLOCK_SOURCES:
            raise ValueError("MQNODE_BTC_BLOCK_SOURCE must be json or rest")
        if settings.price_composition_method not in COMPOSITION_METHODS:
            raise ValueError("MQNODE_PRICE_COMPOSITION_METHOD must be one of " + ", ".join(COMPOSITION_METHODS))
        if settings.db_write_method not in ("auto", "copy", "insert"):
            raise ValueError("MQNODE_DB_WRITE_METHOD must be auto, copy or insert")
        return settings


def reference_table() -> str:
    """The configuration reference as a Markdown table (docs/configuration.md holds it; a test keeps it equal)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        default = f.default
        if isinstance(default, Path):
            default = default.relative_to(PROJECT_DIR) if default.is_relative_to(PROJECT_DIR) else default
        shown = "unset" if default is None else f"`{default}`"
        lines.append(f"| {f.metadata['env']} | {shown} | {f.metadata['doc']} |")
    lines.append("| MQNODE_LOG_LEVEL | `INFO` | log level of every command (also `mqnode --log-level`) |")
    lines.append(
        "| MQNODE_PG_BIN | newest `/usr/lib/postgresql/*/bin` | PostgreSQL server binaries of the embedded"
        " and test servers |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_table())
