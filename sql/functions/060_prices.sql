-- Price lane: registry seed, sparse venue 10m rows from child candles, the canonical composer.

-- api fields of core.mq_price_source_registry: *
-- core.seed_price_source_registry(p_reset_source): insert the default markets: the six venues' BTC
-- markets (enabled) and their stablecoin/USD markets (disabled until an operator enables them: they feed
-- the USDT/USD and USDC/USD rate, see core.stablecoin_usd_rate_10m). Re-seeding keeps every edit of
-- existing rows; p_reset_source = '<source>' restores that one row to its defaults ('all' restores all).
-- Returns the number of rows inserted or reset.
CREATE OR REPLACE FUNCTION core.seed_price_source_registry(p_reset_source text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_rows integer;
BEGIN
    WITH defaults (source_name, venue, market_type, symbol, base_currency, quote_currency, priority_rank,
                   enabled, config_json) AS (
        VALUES
        ('bitstamp', 'bitstamp', 'spot', 'btcusd', 'BTC', 'USD', 1, true, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://www.bitstamp.net', 'endpoint', '/api/v2/ohlc/btcusd/',
            'market_type', 'spot', 'symbol', 'btcusd', 'child_interval', '1m',
            'historical_start_utc', '2011-08-18T00:00:00Z', 'auto_historical_backfill', true)),
        ('coinbase', 'coinbase', 'spot', 'BTC-USD', 'BTC', 'USD', 2, true, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://api.exchange.coinbase.com', 'endpoint', '/products/BTC-USD/candles',
            'market_type', 'spot', 'symbol', 'BTC-USD', 'child_interval', '1m',
            'historical_start_utc', '2015-07-20T00:00:00Z', 'auto_historical_backfill', true)),
        ('bybit', 'bybit', 'spot', 'BTCUSDT', 'BTC', 'USDT', 3, true, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://api.bybit.com', 'endpoint', '/v5/market/kline',
            'market_type', 'spot', 'symbol', 'BTCUSDT', 'child_interval', '1m',
            'historical_start_utc', '2021-07-05T00:00:00Z', 'auto_historical_backfill', true)),
        ('binance', 'binance', 'spot', 'BTCUSDT', 'BTC', 'USDT', 4, true, jsonb_build_object(
            'mode', 'remote', 'api_base', 'https://api.binance.com', 'endpoint', '/api/v3/klines',
            'market_type', 'spot', 'symbol', 'BTCUSDT', 'child_interval', '1m',
            'historical_start_utc', '2017-08-17T00:00:00Z', 'auto_historical_backfill', true)),
        ('okx', 'okx', 'spot', 'BTC-USDT', 'BTC', 'USDT', 5, true, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://www.okx.com', 'endpoint', '/api/v5/market/history-candles',
            'market_type', 'spot', 'symbol', 'BTC-USDT', 'child_interval', '1m',
            'historical_start_utc', '2018-01-11T00:00:00Z', 'auto_historical_backfill', true)),
        ('bitfinex', 'bitfinex', 'spot', 'tBTCUSD', 'BTC', 'USD', 6, true, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://api-pub.bitfinex.com', 'endpoint', '/v2/candles/trade:1m:tBTCUSD/hist',
            'market_type', 'spot', 'symbol', 'tBTCUSD', 'child_interval', '1m',
            'historical_start_utc', '2013-04-01T00:00:00Z', 'auto_historical_backfill', true)),
        -- Stablecoin/USD markets (rate sources), fetched by the same venue loaders once enabled; no history
        -- backfill by default (set historical_start_utc and auto_historical_backfill to backfill).
        ('bitstamp_usdtusd', 'bitstamp', 'spot', 'usdtusd', 'USDT', 'USD', 11, false, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://www.bitstamp.net', 'endpoint', '/api/v2/ohlc/usdtusd/',
            'market_type', 'spot', 'symbol', 'usdtusd', 'child_interval', '1m', 'auto_historical_backfill', false)),
        ('coinbase_usdt_usd', 'coinbase', 'spot', 'USDT-USD', 'USDT', 'USD', 12, false, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://api.exchange.coinbase.com', 'endpoint', '/products/USDT-USD/candles',
            'market_type', 'spot', 'symbol', 'USDT-USD', 'child_interval', '1m', 'auto_historical_backfill', false)),
        ('bitfinex_tustusd', 'bitfinex', 'spot', 'tUSTUSD', 'USDT', 'USD', 13, false, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://api-pub.bitfinex.com', 'endpoint', '/v2/candles/trade:1m:tUSTUSD/hist',
            'market_type', 'spot', 'symbol', 'tUSTUSD', 'child_interval', '1m', 'auto_historical_backfill', false)),
        ('bitstamp_usdcusd', 'bitstamp', 'spot', 'usdcusd', 'USDC', 'USD', 14, false, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://www.bitstamp.net', 'endpoint', '/api/v2/ohlc/usdcusd/',
            'market_type', 'spot', 'symbol', 'usdcusd', 'child_interval', '1m', 'auto_historical_backfill', false)),
        ('bitfinex_tudcusd', 'bitfinex', 'spot', 'tUDCUSD', 'USDC', 'USD', 15, false, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://api-pub.bitfinex.com', 'endpoint', '/v2/candles/trade:1m:tUDCUSD/hist',
            'market_type', 'spot', 'symbol', 'tUDCUSD', 'child_interval', '1m', 'auto_historical_backfill', false))
    )

    INSERT INTO core.mq_price_source_registry AS r (
        source_name, venue, market_type, symbol, base_currency, quote_currency, config_json, priority_rank, enabled
    )
    SELECT
        d.source_name, d.venue, d.market_type, d.symbol, d.base_currency, d.quote_currency, d.config_json,
        d.priority_rank, d.enabled
    FROM defaults AS d
    ON CONFLICT (source_name) DO UPDATE
    SET venue = excluded.venue,
        market_type = excluded.market_type,
        symbol = excluded.symbol,
        base_currency = excluded.base_currency,
        quote_currency = excluded.quote_currency,
        config_json = excluded.config_json,
        priority_rank = excluded.priority_rank,
        enabled = excluded.enabled,
        updated_at = now()
    WHERE p_reset_source = 'all' OR r.source_name = p_reset_source;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;

-- core.venue_price_10m (every venue table as one relation): 055_venue_rows.sql.

-- core.build_venue_price_10m(p_venue, p_symbol, p_from, p_to, p_move_checkpoint)
-- Builds core.<venue>_price_10m for buckets in [p_from, p_to] from raw.venue_candles, set-based: the rows
-- of core.venue_price_10m_rows (a row only where the venue has child candles, sparse, never a fake row;
-- open of the first child, close of the last, max, min, sums; expected/actual child counts and
-- quality_status 'complete' or 'partial'), written by core.write_venue_price_10m (the one writer:
-- rows written from other modes, a collector's websocket rows or pushes, are replaced only by a complete
-- REST bucket; the composer is rewound and NOTIFY venue_price_ready sent).
-- With p_move_checkpoint, btc_price_source_<market>:10m moves to the last complete bucket written (the
-- registry's source_name of that venue and symbol, else the venue).
-- Re-runnable: the same candles give the same rows. Returns the number of rows written.
CREATE OR REPLACE FUNCTION core.build_venue_price_10m(
    p_venue text,
    p_symbol text,
    p_from timestamptz,
    p_to timestamptz,
    p_move_checkpoint boolean DEFAULT TRUE
)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_rows integer;
    v_last_complete timestamptz;
    v_component text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM core.mq_price_source_registry AS r WHERE r.venue = p_venue) THEN
        RAISE EXCEPTION 'unknown price venue %', p_venue USING ERRCODE = '22023';
    END IF;

    -- The one aggregate (core.venue_price_10m_rows) through the one writer (validity, precedence, composer
    -- rewind, NOTIFY).
    v_rows := core.write_venue_price_10m(p_venue, ARRAY(
        SELECT r FROM core.venue_price_10m_rows(p_venue, p_symbol, p_from, p_to) AS r
    ));

    IF p_move_checkpoint THEN
        -- The market's own checkpoint: btc_price_source_<source_name> of the registry row listing this
        -- venue and symbol (a venue may list several markets), else btc_price_source_<venue>.
        v_component := core.checkpoint_component('price_source', coalesce(
            (SELECT r.source_name FROM core.mq_price_source_registry AS r
             WHERE r.venue = p_venue AND r.symbol = p_symbol), p_venue));
        EXECUTE format(
            'SELECT max(bucket_start_utc) FROM core.%I WHERE symbol = $1 AND bucket_start_utc <= core.bucket_10m($2)'
            ' AND quality_status = ''complete''',
            p_venue || '_price_10m'
        ) INTO v_last_complete USING p_symbol, p_to;
        -- Never moves back when an older range is rebuilt.
        SELECT greatest(v_last_complete, c.last_bucket_time) INTO v_last_complete
        FROM (SELECT NULL::timestamptz AS dummy) AS d
        LEFT JOIN core.sync_checkpoints AS c
            ON c.chain = 'btc' AND c.component = v_component AND c."interval" = '10m';
        IF v_last_complete IS NOT NULL THEN
            PERFORM core.set_checkpoint('btc', v_component, '10m', NULL, v_last_complete, 'ok');
        END IF;
    END IF;
    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION core.build_venue_price_10m(text, text, timestamptz, timestamptz, boolean) IS 'Build the sparse 10m rows of one venue from its child candles over a time range (idempotent).';

-- core.stablecoin_usd_rate_10m(p_from, p_to): the USD price of one USDT and of one USDC per 10m bucket in
-- [p_from, p_to], one row per bucket and stablecoin that has a measured rate, composed from the enabled
-- registry markets (never assumed 1:1):
--   direct  = the stablecoin/USD markets (base USDT or USDC, quote USD; e.g. bitstamp usdtusd, coinbase
--             USDT-USD, bitfinex tUSTUSD): the volume-weighted mean of their bucket closes (weights: the
--             stablecoin volume; equal weights when none reports volume);
--   implied = a venue listing BTC against USD and against the stablecoin (two enabled BTC markets of the
--             same venue with rows in the bucket): close(BTC/USD) / close(BTC/stablecoin), combined across
--             such venues weighted by the BTC/stablecoin volume (equal weights when none reports volume).
-- Precedence: a bucket with any direct market uses the direct rate only; implied only where no direct
-- market has a row. markets lists what was used: [{"source", "rate", "weight"}].
CREATE OR REPLACE FUNCTION core.stablecoin_usd_rate_10m(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
    bucket_start_utc timestamptz, stablecoin text, usd_rate numeric, rate_source text, markets jsonb
)
LANGUAGE sql STABLE
-- Bulk equi-joins over CTEs whose row estimates collapse to 1 (filters on computed columns): a nested
-- loop there is quadratic in the range (minutes for three weeks), a hash join linear. The disabled
-- nested loops' cost would switch JIT on (seconds of compilation for a query of milliseconds): off.
SET enable_nestloop = off
SET jit = off
AS $$
    WITH listed AS (
        SELECT
            r.source_name,
            r.venue,
            r.base_currency,
            r.quote_currency,
            v.bucket_start_utc,
            v.close_price_usd AS c,
            v.volume_btc AS volume
        FROM core.venue_price_10m AS v
        INNER JOIN core.mq_price_source_registry AS r
            ON v.venue = r.venue AND v.symbol = r.symbol AND r.enabled
        WHERE v.bucket_start_utc BETWEEN p_from AND p_to AND v.close_price_usd > 0
    ),

    direct AS (
        SELECT
            l.bucket_start_utc,
            l.base_currency AS stablecoin,
            l.source_name AS source,
            l.c AS rate,
            l.volume
        FROM listed AS l
        WHERE l.base_currency IN ('USDT', 'USDC') AND l.quote_currency = 'USD'
    ),

    implied AS (
        SELECT
            s.bucket_start_utc,
            s.quote_currency AS stablecoin,
            u.source_name || '/' || s.source_name AS source,
            u.c / s.c AS rate,
            s.volume
        FROM listed AS s
        INNER JOIN listed AS u
            ON
                s.venue = u.venue AND s.bucket_start_utc = u.bucket_start_utc
                AND u.base_currency = 'BTC' AND u.quote_currency = 'USD'
        WHERE s.base_currency = 'BTC' AND s.quote_currency IN ('USDT', 'USDC')
    ),

    measured AS (
        SELECT
            d.*,
            'direct' AS rate_source
        FROM direct AS d
        UNION ALL
        SELECT
            i.*,
            'implied' AS rate_source
        FROM implied AS i
        WHERE NOT EXISTS (
            SELECT 1 FROM direct AS d
            WHERE d.bucket_start_utc = i.bucket_start_utc AND d.stablecoin = i.stablecoin
        )
    ),

    weighted AS (
        SELECT
            m.*,
            CASE
                WHEN coalesce(sum(m.volume) FILTER (WHERE m.volume > 0)
                    OVER (PARTITION BY m.bucket_start_utc, m.stablecoin), 0) > 0
                    THEN coalesce(m.volume, 0)
                ELSE 1
            END AS w
        FROM measured AS m
    ),

    shared AS (
        SELECT
            wt.*,
            wt.w / sum(wt.w) OVER (PARTITION BY wt.bucket_start_utc, wt.stablecoin) AS share
        FROM weighted AS wt
    )

    SELECT
        wt.bucket_start_utc,
        wt.stablecoin,
        round(sum(wt.w * wt.rate) / sum(wt.w), 12) AS usd_rate,
        min(wt.rate_source) AS rate_source,
        jsonb_agg(jsonb_build_object(
            'source', wt.source, 'rate', round(wt.rate, 12), 'weight', round(wt.share, 8)
        ) ORDER BY wt.source) AS markets
    FROM shared AS wt
    GROUP BY wt.bucket_start_utc, wt.stablecoin
$$;
COMMENT ON FUNCTION core.stablecoin_usd_rate_10m(timestamptz, timestamptz) IS 'USDT/USD and USDC/USD per 10m bucket: direct stablecoin/USD markets first, else implied from a venue listing BTC against both.';

-- core.price_max_deviation(): the default of p_max_deviation (median_filtered_v1): the largest share a
-- venue's close may stray from the median close of the others. The one definition (the composer's
-- functions default to it, `mqnode prices compose --max-deviation` too). Pure.
CREATE OR REPLACE FUNCTION core.price_max_deviation()
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT 0.02
$$;

-- core.price_min_coverage(): the default of p_min_coverage (median_filtered_v1, reference_rate_v1): the
-- smallest share of its child candles a venue row needs. The one definition, as above. Pure.
CREATE OR REPLACE FUNCTION core.price_min_coverage()
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT 0.5
$$;

-- api fields of core.mq_btc_price_10m: *
-- core.btc_price_composition_10m(p_method, p_from, p_to, p_max_deviation, p_min_coverage, p_convert):
-- the canonical price of every bucket in [p_from, p_to] that has a candidate market, computed and not
-- stored (core.compose_btc_price_10m stores it; the API's method comparison reads it). Candidates: the
-- enabled registry markets with base BTC, on their venue and symbol. A market quoted in USDT or USDC is
-- converted at the bucket's rate (core.stablecoin_usd_rate_10m): prices x usd_rate, volume_usd x usd_rate;
-- no rate for the bucket: the market is left out with reason 'no_usd_rate' (never 1:1). p_convert = false
-- composes the raw quotes as if they were USD (a comparison only: rate_source 'unconverted' in the
-- provenance; the composer lane always converts).
-- Methods (10m venue rows): volume_weighted_ohlc_v1 and median_filtered_v1 as documented at
-- core.compose_btc_price_10m, on the converted prices.
-- reference_rate_v1 (the venues' 1m child candles in raw.venue_candles, converted at the bucket's rate):
--   a market is left out of the bucket when it has a 10m row but no 1m child candles (reason 'gap'),
--   no USD rate ('no_usd_rate'), or closed 1m candles in fewer than p_min_coverage x 10 of the bucket's
--   minutes ('stale'; a candle loaded before its minute ended is still forming and does not count);
--   per 1-minute slice: the volume-weighted median across the remaining markets of the converted open,
--   high, low and close (weights: base volume; equal weights when no candle of the slice has volume;
--   median = mean of the first value whose cumulative weight reaches half the slice's weight and the
--   first that passes it, values in ascending order: the usual median for equal weights);
--   over the bucket: close = the mean of the slice medians of the non-empty slices (each slice is one
--   minute: time-weighted), open = the first non-empty slice's median open, high = the largest slice
--   median high, low = the smallest slice median low; empty slices are left out (nothing carried
--   forward); no non-empty slice: no price. One market: its own 1m candles, averaged.
-- Provenance: contributing_sources = [{"source", "quote", "usd_rate", "rate_source", "weight", "close",
-- "close_usd"}] (reference_rate_v1 adds "slices"; weight = the market's share of the composition's
-- weights: volume share for v1, mean slice-weight share for reference_rate_v1); excluded_sources =
-- [{"source", "reason"}]; usd_rates = the bucket's rates per stablecoin.
CREATE OR REPLACE FUNCTION core.btc_price_composition_10m(
    p_method text,
    p_from timestamptz,
    p_to timestamptz,
    p_max_deviation numeric DEFAULT core.price_max_deviation(),
    p_min_coverage numeric DEFAULT core.price_min_coverage(),
    p_convert boolean DEFAULT TRUE
)
RETURNS TABLE (
    bucket_start_utc timestamptz,
    source_count integer,
    source_names text[],
    open_price_usd numeric,
    high_price_usd numeric,
    low_price_usd numeric,
    close_price_usd numeric,
    volume_btc numeric,
    volume_usd numeric,
    excluded_sources jsonb,
    contributing_sources jsonb,
    usd_rates jsonb
)
LANGUAGE sql STABLE
SET enable_nestloop = off  -- see core.stablecoin_usd_rate_10m
SET jit = off
AS $$
    WITH rates AS (
        SELECT r.* FROM core.stablecoin_usd_rate_10m(p_from, p_to) AS r
    ),

    markets AS (
        SELECT
            r.source_name AS source,
            r.venue,
            r.symbol,
            r.quote_currency AS quote
        FROM core.mq_price_source_registry AS r
        WHERE r.enabled AND r.base_currency = 'BTC'
    ),

    -- The 10m venue rows of the candidate markets with the bucket's rate (1 for USD; NULL: no rate).
    rows_10m AS (
        SELECT
            mk.source,
            mk.quote,
            v.*,
            core.candle_problem(
                v.open_price_usd, v.high_price_usd, v.low_price_usd, v.close_price_usd, v.volume_btc, v.volume_usd
            ) AS problem,
            CASE WHEN mk.quote = 'USD' OR NOT p_convert THEN 1 ELSE rt.usd_rate END AS rate,
            CASE
                WHEN mk.quote = 'USD' THEN 'usd'
                WHEN NOT p_convert THEN 'unconverted'
                ELSE rt.rate_source
            END AS rate_source
        FROM core.venue_price_10m AS v
        INNER JOIN markets AS mk ON v.venue = mk.venue AND v.symbol = mk.symbol
        LEFT JOIN rates AS rt ON v.bucket_start_utc = rt.bucket_start_utc AND mk.quote = rt.stablecoin
        WHERE v.bucket_start_utc BETWEEN p_from AND p_to
    ),

    candidates AS (
        SELECT
            v.source,
            v.quote,
            v.rate,
            v.rate_source,
            v.bucket_start_utc,
            v.close_price_usd AS raw_c,
            v.open_price_usd * v.rate AS o,
            v.high_price_usd * v.rate AS h,
            v.low_price_usd * v.rate AS l,
            v.close_price_usd * v.rate AS c,
            v.volume_btc,
            v.volume_usd * v.rate AS volume_usd,
            CASE
                WHEN v.problem IS NOT NULL THEN 'invalid: ' || core.candle_problem_reason(v.problem)
                WHEN v.rate IS NULL THEN format('no_usd_rate: no %s/USD rate measured for the bucket', v.quote)
                WHEN p_method = 'median_filtered_v1'
                    AND (v.source_updated_at < v.bucket_start_utc + INTERVAL '10 minutes'
                         OR v.actual_child_candle_count::numeric
                         < p_min_coverage * nullif(v.expected_child_candle_count, 0))
                    THEN 'stale: written before the bucket closed or too few child candles'
            END AS reason
        FROM rows_10m AS v
        WHERE p_method IN ('volume_weighted_ohlc_v1', 'median_filtered_v1')
    ),

    medians AS (
        SELECT
            cd.bucket_start_utc,
            core.exact_median(array_agg(cd.c ORDER BY cd.c) FILTER (WHERE cd.c IS NOT NULL)) AS median_close
        FROM candidates AS cd
        WHERE cd.reason IS NULL
        GROUP BY cd.bucket_start_utc
    ),

    judged AS (
        SELECT
            cd.*,
            coalesce(cd.reason, CASE
                WHEN p_method = 'median_filtered_v1' AND abs(cd.c / md.median_close - 1) > p_max_deviation
                    THEN format('outlier: close %s is %s%% from the cross-venue median %s',
                                round(cd.c, 8), round(100 * (cd.c / md.median_close - 1), 2),
                                round(md.median_close, 8))
            END) AS judged_reason
        FROM candidates AS cd
        LEFT JOIN medians AS md ON cd.bucket_start_utc = md.bucket_start_utc
    ),

    weighted AS (
        SELECT
            j.*,
            CASE
                WHEN j.judged_reason IS NOT NULL THEN NULL
                WHEN coalesce(sum(j.volume_btc) FILTER (WHERE j.judged_reason IS NULL AND j.volume_btc > 0)
                              OVER (PARTITION BY j.bucket_start_utc), 0) > 0
                    THEN coalesce(j.volume_btc, 0)
                ELSE 1
            END AS w
        FROM judged AS j
    ),

    shares AS (
        SELECT
            wt.*,
            wt.w / nullif(sum(wt.w) FILTER (WHERE wt.w > 0) OVER (PARTITION BY wt.bucket_start_utc), 0) AS share
        FROM weighted AS wt
    ),

    composed_10m AS (
        SELECT
            wt.bucket_start_utc,
            (count(*) FILTER (WHERE wt.w > 0))::integer AS source_count,
            coalesce(array_agg(wt.source ORDER BY wt.source) FILTER (WHERE wt.w > 0), '{}') AS source_names,
            round(sum(wt.w * wt.o) FILTER (WHERE wt.w > 0) / nullif(sum(wt.w) FILTER (WHERE wt.w > 0), 0), 8) AS o,
            round(sum(wt.w * wt.h) FILTER (WHERE wt.w > 0) / nullif(sum(wt.w) FILTER (WHERE wt.w > 0), 0), 8) AS h,
            round(sum(wt.w * wt.l) FILTER (WHERE wt.w > 0) / nullif(sum(wt.w) FILTER (WHERE wt.w > 0), 0), 8) AS l,
            round(sum(wt.w * wt.c) FILTER (WHERE wt.w > 0) / nullif(sum(wt.w) FILTER (WHERE wt.w > 0), 0), 8) AS c,
            sum(wt.volume_btc) FILTER (WHERE wt.w > 0) AS volume_btc,
            sum(wt.volume_usd) FILTER (WHERE wt.w > 0) AS volume_usd,
            coalesce(jsonb_agg(jsonb_build_object(
                'source', wt.source,
                'reason', coalesce(wt.judged_reason, 'no weight: no volume reported while other venues report volume')
            ) ORDER BY wt.source) FILTER (WHERE wt.w IS NULL OR wt.w = 0), '[]') AS excluded_sources,
            coalesce(jsonb_agg(jsonb_build_object(
                'source', wt.source, 'quote', wt.quote, 'usd_rate', wt.rate, 'rate_source', wt.rate_source,
                'weight', round(wt.share, 8), 'close', wt.raw_c, 'close_usd', round(wt.c, 8)
            ) ORDER BY wt.source) FILTER (WHERE wt.w > 0), '[]') AS contributing_sources
        FROM shares AS wt
        GROUP BY wt.bucket_start_utc
    ),

    -- reference_rate_v1: the markets' 1m child candles with the bucket's rate.
    children AS (
        SELECT
            mk.source,
            mk.quote,
            core.bucket_10m(ch.open_time) AS bucket_start_utc,
            ch.open_time,
            ch.close_price AS raw_c,
            ch.volume_base,
            ch.volume_quote,
            ch.loaded_at >= ch.open_time + INTERVAL '1 minute' AS closed,
            CASE WHEN mk.quote = 'USD' OR NOT p_convert THEN 1 ELSE rt.usd_rate END AS rate,
            CASE
                WHEN mk.quote = 'USD' THEN 'usd'
                WHEN NOT p_convert THEN 'unconverted'
                ELSE rt.rate_source
            END AS rate_source,
            ch.open_price,
            ch.high_price,
            ch.low_price,
            ch.close_price
        FROM raw.venue_candles AS ch
        INNER JOIN markets AS mk ON ch.venue = mk.venue AND ch.symbol = mk.symbol
        LEFT JOIN rates AS rt ON core.bucket_10m(ch.open_time) = rt.bucket_start_utc AND mk.quote = rt.stablecoin
        WHERE
            p_method = 'reference_rate_v1' AND ch.interval_sec = 60
            AND ch.open_time >= p_from AND ch.open_time < p_to + INTERVAL '10 minutes'
    ),

    -- One row per market and bucket that has a 10m row or 1m children, with the reason it is left out.
    ref_markets AS (
        SELECT
            coalesce(ch.source, v.source) AS source,
            coalesce(ch.bucket_start_utc, v.bucket_start_utc) AS bucket_start_utc,
            CASE
                WHEN ch.source IS NULL THEN 'gap: a 10m row but no 1m child candles in the bucket'
                WHEN ch.rate IS NULL THEN format('no_usd_rate: no %s/USD rate measured for the bucket', ch.quote)
                WHEN ch.closed_minutes < p_min_coverage * 10
                    THEN format('stale: closed 1m candles in %s of the 10 minutes', ch.closed_minutes)
            END AS reason
        FROM (
            SELECT
                c.source,
                c.quote,
                c.bucket_start_utc,
                min(c.rate) AS rate,
                count(*) FILTER (WHERE c.closed) AS closed_minutes
            FROM children AS c
            GROUP BY c.source, c.quote, c.bucket_start_utc
        ) AS ch
        FULL JOIN (
            SELECT r.source, r.bucket_start_utc FROM rows_10m AS r WHERE p_method = 'reference_rate_v1'
        ) AS v ON ch.source = v.source AND ch.bucket_start_utc = v.bucket_start_utc
    ),

    slice_rows AS (
        SELECT
            c.*,
            CASE
                WHEN coalesce(sum(c.volume_base) FILTER (WHERE c.volume_base > 0)
                    OVER (PARTITION BY c.open_time), 0) > 0
                    THEN coalesce(c.volume_base, 0)
                ELSE 1
            END AS w
        FROM children AS c
        INNER JOIN ref_markets AS rm
            ON c.source = rm.source AND c.bucket_start_utc = rm.bucket_start_utc AND rm.reason IS NULL
        WHERE c.closed
    ),

    slice_shares AS (
        SELECT
            s.*,
            s.w / sum(s.w) OVER (PARTITION BY s.open_time) AS share
        FROM slice_rows AS s
    ),

    slice_values AS (
        SELECT
            s.source,
            s.open_time,
            s.w,
            f.field,
            f.value,
            sum(s.w) OVER (PARTITION BY s.open_time, f.field ORDER BY f.value, s.source) AS cum_w,
            sum(s.w) OVER (PARTITION BY s.open_time, f.field) AS total_w
        FROM slice_rows AS s
        CROSS JOIN LATERAL (
            VALUES
            ('o', s.open_price * s.rate),
            ('h', s.high_price * s.rate),
            ('l', s.low_price * s.rate),
            ('c', s.close_price * s.rate)
        ) AS f (field, value)
        WHERE s.w > 0
    ),

    slices AS (
        SELECT
            sv.open_time,
            core.bucket_10m(sv.open_time) AS bucket_start_utc,
            sv.field,
            (min(sv.value) FILTER (WHERE sv.cum_w >= sv.total_w / 2)
             + min(sv.value) FILTER (WHERE sv.cum_w > sv.total_w / 2)) / 2 AS median_value
        FROM slice_values AS sv
        GROUP BY sv.open_time, sv.field
    ),

    ref_prices AS (
        SELECT
            sl.bucket_start_utc,
            (array_agg(sl.median_value ORDER BY sl.open_time) FILTER (WHERE sl.field = 'o'))[1] AS o,
            max(sl.median_value) FILTER (WHERE sl.field = 'h') AS h,
            min(sl.median_value) FILTER (WHERE sl.field = 'l') AS l,
            avg(sl.median_value) FILTER (WHERE sl.field = 'c') AS c
        FROM slices AS sl
        GROUP BY sl.bucket_start_utc
    ),

    ref_contributions AS (
        SELECT
            s.bucket_start_utc,
            s.source,
            min(s.quote) AS quote,
            min(s.rate) AS rate,
            min(s.rate_source) AS rate_source,
            count(*) FILTER (WHERE s.w > 0) AS slice_count,
            sum(s.share) AS weight_sum,
            (array_agg(s.raw_c ORDER BY s.open_time DESC))[1] AS raw_c,
            sum(s.volume_base) AS volume_btc,
            sum(s.volume_quote * s.rate) AS volume_usd
        FROM slice_shares AS s
        GROUP BY s.bucket_start_utc, s.source
    ),

    composed_ref AS (
        SELECT
            rm.bucket_start_utc,
            (count(rc.source))::integer AS source_count,
            coalesce(array_agg(rc.source ORDER BY rc.source) FILTER (WHERE rc.source IS NOT NULL), '{}') AS source_names,
            round(min(rp.o), 8) AS o,
            round(min(rp.h), 8) AS h,
            round(min(rp.l), 8) AS l,
            round(min(rp.c), 8) AS c,
            sum(rc.volume_btc) AS volume_btc,
            sum(rc.volume_usd) AS volume_usd,
            coalesce(jsonb_agg(jsonb_build_object('source', rm.source, 'reason', rm.reason) ORDER BY rm.source)
                FILTER (WHERE rc.source IS NULL), '[]') AS excluded_sources,
            coalesce(jsonb_agg(jsonb_build_object(
                'source', rc.source, 'quote', rc.quote, 'usd_rate', rc.rate, 'rate_source', rc.rate_source,
                'weight', round(rc.weight_sum / nullif(ns.slice_count, 0), 8), 'slices', rc.slice_count,
                'close', rc.raw_c, 'close_usd', round(rc.raw_c * rc.rate, 8)
            ) ORDER BY rc.source) FILTER (WHERE rc.source IS NOT NULL), '[]') AS contributing_sources
        FROM ref_markets AS rm
        LEFT JOIN ref_contributions AS rc ON rm.bucket_start_utc = rc.bucket_start_utc AND rm.source = rc.source
        LEFT JOIN ref_prices AS rp ON rm.bucket_start_utc = rp.bucket_start_utc
        LEFT JOIN (
            SELECT
                sl.bucket_start_utc,
                count(*) AS slice_count
            FROM slices AS sl WHERE sl.field = 'c' GROUP BY sl.bucket_start_utc
        ) AS ns ON rm.bucket_start_utc = ns.bucket_start_utc
        GROUP BY rm.bucket_start_utc
    ),

    composed AS (
        SELECT * FROM composed_10m
        UNION ALL
        SELECT * FROM composed_ref
    ),

    bucket_rates AS (
        SELECT
            rt.bucket_start_utc,
            jsonb_object_agg(rt.stablecoin, jsonb_build_object(
                'rate', rt.usd_rate, 'rate_source', rt.rate_source, 'markets', rt.markets
            )) AS usd_rates
        FROM rates AS rt
        GROUP BY rt.bucket_start_utc
    )

    SELECT
        cp.bucket_start_utc,
        cp.source_count,
        cp.source_names,
        cp.o,
        cp.h,
        cp.l,
        cp.c,
        cp.volume_btc,
        cp.volume_usd,
        cp.excluded_sources,
        cp.contributing_sources,
        coalesce(br.usd_rates, '{}')
    FROM composed AS cp
    LEFT JOIN bucket_rates AS br ON cp.bucket_start_utc = br.bucket_start_utc
$$;
COMMENT ON FUNCTION core.btc_price_composition_10m(text, timestamptz, timestamptz, numeric, numeric, boolean) IS 'The canonical price of a bucket range by one method, with provenance (computed, not stored).';

-- api fields of core.mq_btc_price_10m: bucket_start_utc, composition_method
-- core.compose_btc_price_10m(p_method, p_from, p_to, p_max_deviation, p_min_coverage)
-- Composes the canonical price core.mq_btc_price_10m for every timeline bucket in [from, to], set-based:
--   timeline = the buckets of core.btc_primitive_10m when it has rows (timeline-complete against the
--              backbone), else every bucket from the first to the last venue bucket;
--   from     = p_from, else the composer checkpoint's last bucket (re-composed: late venue rows), else
--              the timeline's first bucket; to = p_to, else the timeline's last bucket.
-- Candidates and conversion: core.btc_price_composition_10m (the enabled registry BTC markets; USDT/USDC
-- quotes converted at the bucket's stablecoin/USD rate, left out with 'no_usd_rate' without one). Invalid rows
-- (core.candle_problem: non-positive price, high below max(open, close, low), ...) never count.
-- Methods:
--   volume_weighted_ohlc_v1: O, H, L and C are each the volume-weighted mean over the valid rows
--     (equal weights when no row reports volume; a row without volume gets no weight while others report
--     some); volumes are summed.
--   median_filtered_v1: as v1 after leaving out stale rows (written before their bucket closed, or fewer
--     than p_min_coverage of their child candles) and rows whose close is more than p_max_deviation
--     (a share) away from the median close of the remaining rows.
--   reference_rate_v1: over the 1m child candles, see core.btc_price_composition_10m.
-- Every left-out row is listed in excluded_sources with its reason; the counted ones in contributing_sources
-- (quote, usd_rate, weight, close, close_usd), the bucket's stablecoin rates in usd_rates. No counted row: NULL prices,
-- source_count 0. The price fields of core.btc_primitive_10m are refreshed from the result by their one
-- writer, core.set_primitive_10m_prices. Checkpoint btc_price_canonical_composer:10m moves in the same transaction.
-- Re-running any range yields identical rows.
CREATE OR REPLACE FUNCTION core.compose_btc_price_10m(
    p_method text DEFAULT 'volume_weighted_ohlc_v1',
    p_from timestamptz DEFAULT NULL,
    p_to timestamptz DEFAULT NULL,
    p_max_deviation numeric DEFAULT core.price_max_deviation(),
    p_min_coverage numeric DEFAULT core.price_min_coverage()
)
RETURNS TABLE (from_bucket timestamptz, to_bucket timestamptz, bucket_count integer)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_backbone boolean;
    v_checkpoint timestamptz;
    v_first timestamptz;
    v_last timestamptz;
    v_start timestamptz;
    v_end timestamptz;
    v_rows integer;
BEGIN
    IF p_method NOT IN ('volume_weighted_ohlc_v1', 'median_filtered_v1', 'reference_rate_v1') THEN
        RAISE EXCEPTION 'unknown composition method %', p_method USING ERRCODE = '22023';
    END IF;
    p_max_deviation := coalesce(p_max_deviation, core.price_max_deviation());  -- NULL: the default
    p_min_coverage := coalesce(p_min_coverage, core.price_min_coverage());

    v_backbone := EXISTS (SELECT 1 FROM core.btc_primitive_10m);
    IF v_backbone THEN
        SELECT min(p.bucket_start_utc), max(p.bucket_start_utc) INTO v_first, v_last FROM core.btc_primitive_10m AS p;
    ELSE
        SELECT min(v.bucket_start_utc), max(v.bucket_start_utc) INTO v_first, v_last FROM core.venue_price_10m AS v;
    END IF;
    IF v_first IS NULL THEN
        RETURN;
    END IF;

    -- Locked until commit: a venue write that rewinds this checkpoint meanwhile waits and then applies.
    SELECT c.last_bucket_time INTO v_checkpoint
    FROM core.sync_checkpoints AS c
    WHERE c.chain = 'btc' AND c.component = core.checkpoint_component('price_composer') AND c."interval" = '10m'
    FOR UPDATE;
    v_start := coalesce(core.bucket_10m(p_from), v_checkpoint, v_first);
    v_start := greatest(v_start, v_first);
    v_end := least(coalesce(core.bucket_10m(p_to), v_last), v_last);
    IF v_end < v_start THEN
        RETURN;
    END IF;

    INSERT INTO core.mq_btc_price_10m AS m (
        bucket_start_utc, source_count, source_names, composition_method, open_price_usd, high_price_usd,
        low_price_usd, close_price_usd, volume_btc, volume_usd, excluded_sources, contributing_sources, usd_rates
    )
    WITH timeline AS (
        SELECT g.bucket_start_utc
        FROM generate_series(v_start, v_end, INTERVAL '10 minutes') AS g (bucket_start_utc)
        WHERE NOT v_backbone
        UNION ALL
        SELECT p.bucket_start_utc
        FROM core.btc_primitive_10m AS p
        WHERE v_backbone AND p.bucket_start_utc BETWEEN v_start AND v_end
    )

    SELECT
        tl.bucket_start_utc,
        coalesce(cp.source_count, 0),
        coalesce(cp.source_names, '{}'),
        p_method,
        cp.open_price_usd,
        cp.high_price_usd,
        cp.low_price_usd,
        cp.close_price_usd,
        cp.volume_btc,
        cp.volume_usd,
        coalesce(cp.excluded_sources, '[]'),
        coalesce(cp.contributing_sources, '[]'),
        coalesce(cp.usd_rates, '{}')
    FROM timeline AS tl
    LEFT JOIN core.btc_price_composition_10m(p_method, v_start, v_end, p_max_deviation, p_min_coverage) AS cp
        ON tl.bucket_start_utc = cp.bucket_start_utc
    ON CONFLICT (bucket_start_utc) DO UPDATE
    SET source_count = excluded.source_count,
        source_names = excluded.source_names,
        composition_method = excluded.composition_method,
        open_price_usd = excluded.open_price_usd,
        high_price_usd = excluded.high_price_usd,
        low_price_usd = excluded.low_price_usd,
        close_price_usd = excluded.close_price_usd,
        volume_btc = excluded.volume_btc,
        volume_usd = excluded.volume_usd,
        excluded_sources = excluded.excluded_sources,
        contributing_sources = excluded.contributing_sources,
        usd_rates = excluded.usd_rates;
    GET DIAGNOSTICS v_rows = ROW_COUNT;

    -- The backbone's price fields, by their one writer (sql/functions/040_btc_primitive_10m.sql).
    PERFORM core.set_primitive_10m_prices(v_start, v_end);

    PERFORM core.set_checkpoint('btc', core.checkpoint_component('price_composer'), '10m', NULL, v_end, 'ok');
    -- Rollups and metrics redo every period from v_start on (prices and the backbone's price fields changed).
    PERFORM core.rewind_checkpoints(ARRAY[core.checkpoint_pattern('rollup'), core.checkpoint_pattern('metric')], v_start);
    PERFORM pg_notify('price_ready', json_build_object('from_bucket', v_start, 'to_bucket', v_end)::text);

    from_bucket := v_start;
    to_bucket := v_end;
    bucket_count := v_rows;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION core.compose_btc_price_10m(text, timestamptz, timestamptz, numeric, numeric) IS 'Compose the canonical 10m BTC/USD price from the venue tables over a range, one set-based UPSERT.';
