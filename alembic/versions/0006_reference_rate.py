"""A USD reference rate: the quote currency of every registered market, stablecoin/USD markets as registry
rows, and per-bucket provenance on the canonical price.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

- core.mq_price_source_registry gains venue (which core.<venue>_price_10m table and which loader the market
  uses; one venue may list several markets, e.g. binance BTCUSDT and BTCUSD), base_currency (BTC, or USDT /
  USDC for a stablecoin/USD rate market) and quote_currency (USD, USDT or USDC). Existing rows: venue =
  source_name, base BTC, quote from the symbol's suffix (USDT / UST -> USDT, USDC / UDC -> USDC, else USD).
- core.mq_btc_price_10m gains contributing_sources (each counted market: quote, USD rate used, weight, raw and
  converted close) and usd_rates (the stablecoin/USD rate of the bucket per stablecoin and where it came
  from), written by core.compose_btc_price_10m (sql/functions/060_prices.sql).
Frozen once released.
"""

from alembic import op
from app.migrations import execute_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

REGISTRY = """
ALTER TABLE core.mq_price_source_registry
    ADD COLUMN venue text,
    ADD COLUMN base_currency text NOT NULL DEFAULT 'BTC' CHECK (base_currency IN ('BTC', 'USDT', 'USDC')),
    ADD COLUMN quote_currency text NOT NULL DEFAULT 'USD' CHECK (quote_currency IN ('USD', 'USDT', 'USDC'));
UPDATE core.mq_price_source_registry
SET venue = source_name,
    quote_currency = CASE
        WHEN upper(symbol) LIKE '%USDT' OR upper(symbol) LIKE '%UST' THEN 'USDT'
        WHEN upper(symbol) LIKE '%USDC' OR upper(symbol) LIKE '%UDC' THEN 'USDC'
        ELSE 'USD'
    END;
ALTER TABLE core.mq_price_source_registry
    ALTER COLUMN venue SET NOT NULL,
    ADD CONSTRAINT mq_price_source_registry_venue_check
        CHECK (venue IN ('bitstamp', 'coinbase', 'bybit', 'binance', 'okx', 'bitfinex')),
    ADD CONSTRAINT mq_price_source_registry_market_check
        CHECK ((base_currency = 'BTC') OR (quote_currency = 'USD' AND base_currency <> quote_currency)),
    ADD CONSTRAINT mq_price_source_registry_venue_symbol_key UNIQUE (venue, symbol);
COMMENT ON COLUMN core.mq_price_source_registry.venue IS
    'The venue whose loader fetches this market and whose core.<venue>_price_10m table holds its rows.';
COMMENT ON COLUMN core.mq_price_source_registry.base_currency IS
    'BTC for a BTC market (composed into the canonical price); USDT or USDC for a stablecoin/USD rate market.';
COMMENT ON COLUMN core.mq_price_source_registry.quote_currency IS
    'What the market is quoted in: USD, USDT or USDC (non-USD quotes are converted at the bucket''s rate).';
"""

CANONICAL = """
ALTER TABLE core.mq_btc_price_10m
    ADD COLUMN contributing_sources jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN usd_rates jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN core.mq_btc_price_10m.contributing_sources IS
    'Markets counted in the bucket: [{"source", "quote", "usd_rate", "weight", "close", "close_usd", ...}].';
COMMENT ON COLUMN core.mq_btc_price_10m.usd_rates IS
    'The stablecoin/USD rate of the bucket per stablecoin: {"USDT": {"rate", "rate_source", "markets"}}.';
"""


def upgrade() -> None:
    bind = op.get_bind()
    execute_sql(bind, REGISTRY)
    execute_sql(bind, CANONICAL)


def downgrade() -> None:
    raise NotImplementedError("revisions are frozen; restore from backup")
