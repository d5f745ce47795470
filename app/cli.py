"""The `mqnode` command line (console script declared in pyproject.toml)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from datetime import UTC, datetime

from app.settings import COMPOSITION_METHODS, Settings


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise SystemExit(f"configuration error: {exc}") from exc


def _database_url(settings: Settings) -> str:
    from app.db import resolve_database_url

    return resolve_database_url(settings)


def _ingest_options(settings: Settings):
    from app.btc.chain_sync import IngestOptions

    return IngestOptions.from_settings(settings)


def _rpc(settings: Settings):
    from app.btc.rpc import BitcoinRpc, RpcConfig

    return BitcoinRpc(RpcConfig.from_settings(settings))


def _parse_until(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SystemExit(f"--until must be an ISO time such as 2024-01-01T00:00:00Z, got {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from app.migrations import upgrade_database

    settings = _settings()
    url = _database_url(settings)
    upgrade_database(url, args.revision)
    print(f"database at revision {args.revision} with sql/functions applied", file=sys.stderr)
    return 0


def cmd_btc_listen(args: argparse.Namespace) -> int:
    from app.btc.listener import ChainListener
    from app.db import connect

    settings = _settings()
    url = _database_url(settings)
    conn = connect(url)
    listener = ChainListener(
        conn,
        _rpc(settings),
        _ingest_options(settings),
        start_height=settings.btc_start_height if args.start_height is None else args.start_height,
        poll_interval_sec=settings.btc_poll_interval_sec,
        write_method=settings.db_write_method,
        database_url=url,
        error_backoff_sec=settings.lane_error_backoff_sec,
        max_backoff_sec=settings.lane_max_backoff_sec,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: listener.stop())
    logging.getLogger(__name__).info("following %s from the raw checkpoint", settings.btc_rpc_url)
    ok = listener.run(once=args.once)
    conn.close()
    return 0 if ok else 1


def cmd_btc_backfill(args: argparse.Namespace) -> int:
    from app.btc.backfill import backfill
    from app.db import connect

    settings = _settings()
    conn = connect(_database_url(settings))
    try:
        report = backfill(
            conn,
            _rpc(settings),
            args.mode,
            _ingest_options(settings),
            args.start_height,
            args.end_height,
            write_method=settings.db_write_method,
            show_progress=not args.no_progress,
            build_until=_parse_until(args.until),
        )
    except ValueError as exc:
        raise SystemExit(f"backfill: {exc}") from exc
    finally:
        conn.close()
    print(
        f"backfill {args.mode}: heights {report.start}..{report.end}, {report.blocks} blocks, "
        f"{report.transactions} transactions, {report.reorgs} reorg(s), raw checkpoint {report.raw_checkpoint}"
    )
    return 0


def cmd_btc_reconcile(args: argparse.Namespace) -> int:
    from app.btc.backfill import reconcile
    from app.db import connect

    settings = _settings()
    conn = connect(_database_url(settings))
    try:
        report = reconcile(
            conn, _rpc(settings), _ingest_options(settings), args.from_height, write_method=settings.db_write_method
        )
    finally:
        conn.close()
    if report.first_mismatch is None:
        print(f"reconcile: {report.checked} stored block hashes match the node")
    else:
        print(
            f"reconcile: drift from height {report.first_mismatch}: {report.reorg_depth} block(s) replaced, "
            f"{report.reingested} re-ingested"
        )
    return 0


def cmd_btc_build(args: argparse.Namespace) -> int:
    from app.btc.chain_sync import build_timeline
    from app.db import connect
    from app.progress import Progress

    settings = _settings()
    conn = connect(_database_url(settings))
    until = _parse_until(args.until) or datetime.now(UTC)
    progress = Progress("10m timeline", None, "buckets")
    first, last = build_timeline(conn, until, progress=progress)
    progress.finish()
    conn.close()
    print(f"btc_primitive_10m built {first} .. {last}" if first else "btc_primitive_10m already up to date")
    return 0


def cmd_sim_node(args: argparse.Namespace) -> int:
    from app.simnode.server import main as sim_main

    # The options were checked by this parser (the same ones: its parents); sim-node's main parses them again.
    return sim_main(args.sim_node_argv)


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import run_demo

    return run_demo(args)


def _seed_registry(query: str, table: str, reset: str | None) -> int:
    """`prices seed` and `metrics seed`: run the registry's seed function in one transaction and report."""
    from app.db import connect

    conn = connect(_database_url(_settings()))
    with conn.transaction():
        (rows,) = conn.execute(query, (reset,)).fetchone()
    conn.close()
    what = f"reset {reset}" if reset else "seeded (existing rows kept as edited)"
    print(f"{table} {what}: {rows} row(s) written")
    return 0


def cmd_prices_seed(args: argparse.Namespace) -> int:
    return _seed_registry("SELECT core.seed_price_source_registry(%s)", "mq_price_source_registry", args.reset)


def cmd_prices_ingest(args: argparse.Namespace) -> int:
    from app.lanes import Lane
    from app.market.ingest import ingest_sources

    settings = _settings()
    failed: list[str] = []

    def ingest(conn) -> bool:
        try:
            reports = ingest_sources(conn, args.source, should_stop=lambda: lane.between_units(conn))
        except ValueError as exc:
            raise SystemExit(f"prices ingest: {exc}") from exc
        for r in reports:
            print(
                f"{r.source}: {r.status} {r.start or ''} .. {r.end or ''} candles={r.candles} rejected={r.rejected}"
                + (f" error={r.message}" if r.message else ""),
                flush=True,
            )
        failed[:] = [r.source for r in reports if r.status == "error"]
        return False

    lane = Lane("price_ingest", _database_url(settings), ingest, interval_sec=settings.price_poll_interval_sec)
    code = _run_lane(lane, once=args.once)
    return 1 if args.once and failed else code


def _run_lane(lane, once: bool) -> int:
    settings = _settings()
    lane.error_backoff_sec, lane.max_backoff_sec = settings.lane_error_backoff_sec, settings.lane_max_backoff_sec
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: lane.stop())
    return 0 if lane.run(once=once) else 1


def _numeric(value: float | None) -> str | None:
    """A float option as the SQL numeric it was typed as (str: 0.02, not the float's binary value); None: NULL."""
    return None if value is None else str(value)


def cmd_prices_compose(args: argparse.Namespace) -> int:
    from app.lanes import Lane

    start = _parse_until(args.start)
    end = _parse_until(args.end)
    settings = _settings()
    args.method = args.method or settings.price_composition_method
    if args.follow and (start or end):
        raise SystemExit("prices compose: --follow composes from the checkpoint; drop --start/--end")

    def compose(conn) -> bool:
        with conn.transaction():
            row = conn.execute(
                "SELECT from_bucket, to_bucket, bucket_count"
                " FROM core.compose_btc_price_10m(%s, %s::timestamptz, %s::timestamptz, %s::numeric, %s::numeric)",
                (args.method, start, end, _numeric(args.max_deviation), _numeric(args.min_coverage)),
            ).fetchone()
        if row is not None:
            print(f"mq_btc_price_10m composed {row[0]} .. {row[1]} ({row[2]} buckets, {args.method})", flush=True)
        elif not args.follow:
            print("mq_btc_price_10m: nothing to compose (up to date, or no backbone and no venue rows)", flush=True)
        return False

    lane = Lane(
        "price_composer",
        _database_url(settings),
        compose,
        channels=("primitive_ready", "venue_price_ready"),
        interval_sec=settings.lane_interval_sec,
    )
    return _run_lane(lane, once=not args.follow)


def cmd_metrics_run(args: argparse.Namespace) -> int:
    from app.lanes import Lane
    from app.metrics import run_metrics

    def run(conn) -> bool:
        try:
            steps = run_metrics(
                conn,
                args.metric,
                args.interval,
                should_stop=lambda: lane.between_units(conn),
                chunk_days=settings.metric_chunk_days,
            )
        except ValueError as exc:
            raise SystemExit(f"metrics run: {exc}") from exc
        for s in steps:
            if args.once or s.status in ("error", "waiting"):
                print(
                    f"{s.metric_name} {s.interval}: {s.status}"
                    + (f" {s.from_bucket} .. {s.to_bucket} rows={s.row_count}" if s.from_bucket else "")
                    + (f" ({s.message})" if s.message else ""),
                    flush=True,
                )
        if not args.once and steps:
            done = [s for s in steps if s.status == "ok"]
            newest = {iv: max((s.to_bucket for s in done if s.interval == iv), default=None) for iv in ("10m", "1h")}
            print(
                f"metrics: {len(done)} of {len(steps)} computed, through 10m {newest['10m']}, 1h {newest['1h']}",
                flush=True,
            )
        failed.clear()
        failed.extend(s for s in steps if s.status == "error")
        return False

    failed: list = []
    settings = _settings()
    lane = Lane(
        "metrics",
        _database_url(settings),
        run,
        channels=("primitive_ready", "price_ready", "rollup_ready"),
        interval_sec=settings.lane_interval_sec,
    )
    code = _run_lane(lane, once=args.once)
    return 1 if args.once and failed else code


def cmd_metrics_seed(args: argparse.Namespace) -> int:
    return _seed_registry("SELECT core.seed_metric_registry(%s)", "metric_registry", args.reset)


def cmd_rollups_refresh(args: argparse.Namespace) -> int:
    from app.lanes import Lane
    from app.rollups import refresh_rollups

    settings = _settings()
    url = _database_url(settings)

    def refresh(conn) -> bool:
        for r in refresh_rollups(conn):
            if r.from_bucket is not None:
                print(f"{r.rollup}: refreshed [{r.from_bucket} .. {r.to_bucket})", flush=True)
        return False

    lane = Lane(
        "rollups",
        url,
        refresh,
        channels=("primitive_ready", "price_ready"),
        interval_sec=settings.lane_interval_sec,
        autocommit=True,  # continuous aggregates refresh outside transaction blocks
    )
    return _run_lane(lane, once=args.once)


def cmd_collector(args: argparse.Namespace) -> int:
    import asyncio

    from app.market.collector import CollectorConfig, collect_binance

    settings = _settings()
    if args.venue != "binance" or settings.price_ws_source != "binance" or settings.price_ws_child_interval != "1m":
        raise SystemExit("collector: only the Binance 1m kline stream is supported (PRICE_WS_SOURCE=binance)")
    local = settings.price_ws_output_mode == "local_db"
    config = CollectorConfig(
        ws_url=settings.price_ws_url,
        symbol=settings.price_ws_symbol,
        rest_base=settings.price_ws_rest_base,
        output_mode=settings.price_ws_output_mode,
        database_url=_database_url(settings) if local else None,
        remote_url=settings.price_ws_remote_ingest_url,
        remote_token=settings.price_ws_remote_ingest_token,
    )
    try:
        config.check()
    except ValueError as exc:
        raise SystemExit(f"collector: {exc}") from exc

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await collect_binance(config, stop)

    asyncio.run(main())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from app.embedded_pg import EmbeddedPostgres
    from app.migrations import upgrade_database
    from app.supervisor import Supervisor, parse_lanes

    settings = _settings()
    try:
        lanes = parse_lanes(args.lanes or settings.run_lanes)
    except ValueError as exc:
        raise SystemExit(f"run: {exc}") from exc
    embedded = None
    if settings.database_url:
        url = _database_url(settings)
    else:
        server = EmbeddedPostgres(settings.embedded_dir / "postgres", settings.embedded_port)
        embedded = None if server.is_running() else server
        server.start()
        url = server.url
    if not args.skip_upgrade:
        upgrade_database(url)
    supervisor = Supervisor(lanes, url, settings, grace_sec=settings.run_grace_sec)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stop())
    api = f"http://{settings.api_host}:{settings.api_port}"
    print(f"mqnode run: lanes {', '.join(lanes)}; database {url}", flush=True)
    if "api" in lanes:
        print(f"mqnode run: API {api}/api/v1/btc/health (OpenAPI {api}/schema)", flush=True)
    try:
        code = supervisor.run()
    finally:
        if embedded is not None:
            embedded.stop()
    print("mqnode run: stopped", flush=True)
    return code


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.api.app import create_app

    settings = _settings()
    # Reads: MQNODE_API_DATABASE_URL (a login role in mqnode_reader) or else the main URL, as mqnode_reader and
    # read-only either way; the internal ingest route writes with the main URL.
    app = create_app(
        _database_url(settings), settings.internal_ingest_token, read_database_url=settings.api_database_url
    )
    # After its graceful shutdown uvicorn raises the signal again for the handler that was there before it:
    # this one, so SIGTERM/SIGINT end `mqnode serve` with exit 0 as they end every other lane.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(app, host=args.host or settings.api_host, port=args.port or settings.api_port, log_level="info")
    return 0


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that can keep the argument strings it was given (as `keep_argv` in the namespace):
    `mqnode sim-node` checks sim-node's options, then hands sim-node's own main the same strings."""

    def __init__(self, *args, keep_argv: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.keep_argv = keep_argv

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if self.keep_argv:
            setattr(parsed, self.keep_argv, list(sys.argv[1:] if args is None else args))
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    from app import simnode
    from app.simnode.server import build_parser as sim_node_parser

    parser = argparse.ArgumentParser(prog="mqnode", description="MQNODE: Bitcoin data node computed in SQL")
    parser.add_argument("--log-level", default=os.environ.get("MQNODE_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="alembic upgrade + re-apply sql/functions")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=cmd_db_upgrade)

    btc = sub.add_parser("btc", help="Bitcoin chain lane").add_subparsers(dest="btc_command", required=True)
    listen = btc.add_parser("listen", help="follow the node tip and keep the 10m timeline current")
    listen.add_argument("--once", action="store_true", help="one pass, then exit")
    listen.add_argument(
        "--start-height", type=int, help="first height when no checkpoint exists (default MQNODE_BTC_START_HEIGHT, 0)"
    )
    listen.set_defaults(func=cmd_btc_listen)

    bf = btc.add_parser("backfill", help="ingest a height range with progress")
    bf.add_argument("--mode", choices=("resume", "full", "range"), default="resume")
    bf.add_argument("--start-height", type=int)
    bf.add_argument("--end-height", type=int)
    bf.add_argument("--no-progress", action="store_true")
    bf.add_argument(
        "--until", help="ISO time the 10m timeline is built to after the blocks (default now; never short of the tip)"
    )
    bf.set_defaults(func=cmd_btc_backfill)

    rc = btc.add_parser("reconcile", help="compare stored hashes with the node and repair drift")
    rc.add_argument("--from-height", type=int)
    rc.set_defaults(func=cmd_btc_reconcile)

    build = btc.add_parser("build", help="build btc_primitive_10m from its checkpoint")
    build.add_argument("--until", help="ISO time the timeline must reach (default now)")
    build.set_defaults(func=cmd_btc_build)

    # sim-node's options are its server module's own (one definition); its -h comes with them.
    sim_options = sim_node_parser()
    sim = sub.add_parser(
        "sim-node",
        help="local Bitcoin Core JSON-RPC simulator",
        description=simnode.__doc__,
        parents=[sim_options],
        add_help=False,
        keep_argv="sim_node_argv",
    )
    sim.set_defaults(func=cmd_sim_node)

    prices = sub.add_parser("prices", help="price lane").add_subparsers(dest="prices_command", required=True)
    seed = prices.add_parser("seed", help="seed mq_price_source_registry with the six venues (keeps edits)")
    seed.add_argument("--reset", metavar="VENUE|all", help="restore this venue (or all) to the defaults")
    seed.set_defaults(func=cmd_prices_seed)
    ingest = prices.add_parser("ingest", help="fetch venue child candles and build <venue>_price_10m")
    which = ingest.add_mutually_exclusive_group(required=True)
    which.add_argument("--source", help="one venue of mq_price_source_registry")
    which.add_argument("--all-enabled", action="store_true", help="every enabled venue (remote ones are skipped)")
    ingest.add_argument("--once", action="store_true", help="one pass, then exit (non-zero if a source failed)")
    ingest.set_defaults(func=cmd_prices_ingest)
    compose = prices.add_parser("compose", help="compose mq_btc_price_10m from the venue tables in SQL")
    compose.add_argument(
        "--method",
        choices=COMPOSITION_METHODS,
        help="default MQNODE_PRICE_COMPOSITION_METHOD (volume_weighted_ohlc_v1)",
    )
    compose.add_argument("--start", help="first bucket (ISO time; default: the composer checkpoint)")
    compose.add_argument("--end", help="last bucket (ISO time; default: the end of the timeline)")
    # Default (None): the SQL's core.price_max_deviation() / core.price_min_coverage(), their one definition.
    compose.add_argument(
        "--max-deviation",
        type=float,
        help="median_filtered_v1: largest share a close may stray from the venues' median"
        " (default core.price_max_deviation())",
    )
    compose.add_argument(
        "--min-coverage",
        type=float,
        help="median_filtered_v1, reference_rate_v1: smallest share of child candles a venue row needs"
        " (default core.price_min_coverage())",
    )
    compose.add_argument(
        "--follow", action="store_true", help="keep composing: on new blocks / venue rows, and on a timer"
    )
    compose.set_defaults(func=cmd_prices_compose)

    metrics = sub.add_parser("metrics", help="derived metrics").add_subparsers(dest="metrics_command", required=True)
    mrun = metrics.add_parser("run", help="run the registered metrics from their checkpoints (keeps following)")
    mrun.add_argument("--metric", help="only this metric_name")
    mrun.add_argument("--interval", choices=("10m", "1h", "24h"), help="only this interval")
    mrun.add_argument("--once", action="store_true", help="one pass, then exit (non-zero if a metric failed)")
    mrun.set_defaults(func=cmd_metrics_run)
    mseed = metrics.add_parser("seed", help="seed metric_registry (keeps edits)")
    mseed.add_argument("--reset", metavar="METRIC|all", help="restore this metric (or all) to the defaults")
    mseed.set_defaults(func=cmd_metrics_seed)

    rollups = sub.add_parser("rollups", help="1h/24h rollups").add_subparsers(dest="rollups_command", required=True)
    rrefresh = rollups.add_parser("refresh", help="refresh the rollups up to their 10m sources (keeps following)")
    rrefresh.add_argument("--once", action="store_true", help="one pass, then exit")
    rrefresh.set_defaults(func=cmd_rollups_refresh)

    collector = sub.add_parser("collector", help="WebSocket price collector (PRICE_WS_* settings)")
    collector.add_argument("venue", choices=("binance",))
    collector.set_defaults(func=cmd_collector)

    serve = sub.add_parser(
        "serve", help="the Litestar API: read routes over the api views (OpenAPI at /schema), internal price ingest"
    )
    serve.add_argument("--host", help="default MQNODE_API_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, help="default MQNODE_API_PORT (8000)")
    serve.set_defaults(func=cmd_serve)

    run = sub.add_parser("run", help="start and supervise every lane (chain, prices, rollups, metrics, API)")
    run.add_argument("--lanes", help="comma list of lanes (default MQNODE_RUN_LANES: all but the collector)")
    run.add_argument("--skip-upgrade", action="store_true", help="do not run `db upgrade` first")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="the whole node on sim-node and replayed real candles, with URLs and SQL")
    demo.add_argument("--days", type=float, default=3.0, help="days of synthetic chain before now")
    demo.add_argument("--mine-every", type=float, default=30.0, help="seconds between live synthetic blocks")
    demo.add_argument("--txs-per-block", type=int, default=200, help="transactions per synthetic block")
    demo.add_argument("--port", type=int, default=18443, help="sim-node RPC port (0: any free port)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: run until Ctrl-C)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise in lane output
    from app.btc.rpc import RpcError
    from app.migrations import TimescaleDBRequiredError

    try:
        return int(args.func(args) or 0)
    except TimescaleDBRequiredError as exc:  # `db upgrade` and `run`: a clear line, not a traceback
        raise SystemExit(f"mqnode: {exc}") from exc
    except RpcError as exc:  # one-shot chain commands (backfill, reconcile): the node's answer, in one line
        raise SystemExit(f"mqnode {args.command}: {type(exc).__name__}: {exc}") from exc


if __name__ == "__main__":
    raise SystemExit(main())
