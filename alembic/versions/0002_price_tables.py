"""Price lane tables: the source registry, raw venue child candles, the six sparse venue 10m tables,
and the composer's exclusion record on the canonical table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op
from app.migrations import execute_sql, timescaledb_installed

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VENUES = ("bitstamp", "coinbase", "bybit", "binance", "okx", "bitfinex")

TABLES = """
CREATE TABLE core.mq_price_source_registry (
    source_name text PRIMARY KEY,
    market_type text NOT NULL,
    symbol text NOT NULL,
    config_json jsonb NOT NULL CHECK (config_json ->> 'mode' IN ('local', 'remote')),
    priority_rank integer NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE core.mq_price_source_registry IS
    'Price venues: how to fetch each (config_json: mode local|remote, api_base, endpoint, market_type, symbol, '
    'child_interval, historical_start_utc, auto_historical_backfill), its rank and whether it is enabled.';

CREATE TABLE raw.venue_candles (
    venue text NOT NULL,
    symbol text NOT NULL,
    interval_sec integer NOT NULL CHECK (interval_sec > 0 AND 600 % interval_sec = 0),
    open_time timestamptz NOT NULL,
    open_price numeric NOT NULL,
    high_price numeric NOT NULL,
    low_price numeric NOT NULL,
    close_price numeric NOT NULL,
    volume_base numeric CHECK (volume_base >= 0),
    volume_quote numeric CHECK (volume_quote >= 0),
    trade_count integer CHECK (trade_count >= 0),
    raw_payload jsonb NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (venue, symbol, interval_sec, open_time),
    CHECK (open_price > 0 AND high_price > 0 AND low_price > 0 AND close_price > 0),
    CHECK (high_price >= greatest(open_price, close_price, low_price)),
    CHECK (low_price <= least(open_price, close_price, high_price))
);
COMMENT ON TABLE raw.venue_candles IS
    'Child candles (1m or 5m) as each venue reported them; '
    'the sparse <venue>_price_10m rows are built from them in SQL.';
"""

VENUE_TABLE = """
CREATE TABLE core.{venue}_price_10m (
    bucket_start_utc timestamptz NOT NULL,
    symbol text NOT NULL,
    open_price_usd numeric NOT NULL,
    high_price_usd numeric NOT NULL,
    low_price_usd numeric NOT NULL,
    close_price_usd numeric NOT NULL,
    volume_btc numeric,
    volume_usd numeric,
    trade_count bigint,
    raw_payload jsonb,
    source_updated_at timestamptz NOT NULL,
    quality_status text NOT NULL,
    data_source_mode text NOT NULL,
    expected_child_candle_count integer,
    actual_child_candle_count integer,
    first_receive_time timestamptz,
    last_receive_time timestamptz,
    disconnect_count integer,
    gap_count integer,
    PRIMARY KEY (bucket_start_utc, symbol)
);
COMMENT ON TABLE core.{venue}_price_10m IS
    'Sparse, source-factual {venue} BTC 10m OHLCV: a row only where the venue reported trading in the bucket.';
"""

CANONICAL = """
ALTER TABLE core.mq_btc_price_10m ADD COLUMN excluded_sources jsonb NOT NULL DEFAULT '[]';
COMMENT ON COLUMN core.mq_btc_price_10m.excluded_sources IS
    'Venue rows of the bucket the composition method left out, as [{"source": ..., "reason": ...}].';
"""

HYPERTABLES = """
SELECT create_hypertable('raw.venue_candles', by_range('open_time', INTERVAL '7 days'));
ALTER TABLE raw.venue_candles SET (
    timescaledb.compress, timescaledb.compress_segmentby = 'venue, symbol, interval_sec',
    timescaledb.compress_orderby = 'open_time'
);
SELECT add_compression_policy('raw.venue_candles', compress_after => INTERVAL '30 days');
"""

VENUE_HYPERTABLE = """
SELECT create_hypertable('core.{venue}_price_10m', by_range('bucket_start_utc', INTERVAL '90 days'));
ALTER TABLE core.{venue}_price_10m SET (
    timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'bucket_start_utc'
);
SELECT add_compression_policy('core.{venue}_price_10m', compress_after => INTERVAL '180 days');
"""


def upgrade() -> None:
    bind = op.get_bind()
    execute_sql(bind, TABLES)
    for venue in VENUES:
        execute_sql(bind, VENUE_TABLE.format(venue=venue))
    execute_sql(bind, CANONICAL)
    if timescaledb_installed(bind):
        execute_sql(bind, HYPERTABLES)
        for venue in VENUES:
            execute_sql(bind, VENUE_HYPERTABLE.format(venue=venue))


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
