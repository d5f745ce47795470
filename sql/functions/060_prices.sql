-- Price lane: registry seed, sparse venue 10m rows from child candles, the canonical composer.

-- core.seed_price_source_registry(p_reset_source): insert the six default venues. Re-seeding keeps
-- every edit of existing rows; p_reset_source = '<venue>' restores that one venue to its defaults
-- ('all' restores all). Returns the number of rows inserted or reset.
CREATE OR REPLACE FUNCTION core.seed_price_source_registry(p_reset_source text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_rows integer;
BEGIN
    WITH defaults (source_name, market_type, symbol, priority_rank, config_json) AS (
        VALUES
        ('bitstamp', 'spot', 'btcusd', 1, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://www.bitstamp.net', 'endpoint', '/api/v2/ohlc/btcusd/',
            'market_type', 'spot', 'symbol', 'btcusd', 'child_interval', '1m',
            'historical_start_utc', '2011-08-18T00:00:00Z', 'auto_historical_backfill', true)),
        ('coinbase', 'spot', 'BTC-USD', 2, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://api.exchange.coinbase.com', 'endpoint', '/products/BTC-USD/candles',
            'market_type', 'spot', 'symbol', 'BTC-USD', 'child_interval', '1m',
            'historical_start_utc', '2015-07-20T00:00:00Z', 'auto_historical_backfill', true)),
        ('bybit', 'spot', 'BTCUSDT', 3, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://api.bybit.com', 'endpoint', '/v5/market/kline',
            'market_type', 'spot', 'symbol', 'BTCUSDT', 'child_interval', '1m',
            'historical_start_utc', '2021-07-05T00:00:00Z', 'auto_historical_backfill', true)),
        ('binance', 'spot', 'BTCUSDT', 4, jsonb_build_object(
            'mode', 'remote', 'api_base', 'https://api.binance.com', 'endpoint', '/api/v3/klines',
            'market_type', 'spot', 'symbol', 'BTCUSDT', 'child_interval', '1m',
            'historical_start_utc', '2017-08-17T00:00:00Z', 'auto_historical_backfill', true)),
        ('okx', 'spot', 'BTC-USDT', 5, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://www.okx.com', 'endpoint', '/api/v5/market/history-candles',
            'market_type', 'spot', 'symbol', 'BTC-USDT', 'child_interval', '1m',
            'historical_start_utc', '2018-01-11T00:00:00Z', 'auto_historical_backfill', true)),
        ('bitfinex', 'spot', 'tBTCUSD', 6, jsonb_build_object(
            'mode', 'local', 'api_base', 'https://api-pub.bitfinex.com', 'endpoint', '/v2/candles/trade:1m:tBTCUSD/hist',
            'market_type', 'spot', 'symbol', 'tBTCUSD', 'child_interval', '1m',
            'historical_start_utc', '2013-04-01T00:00:00Z', 'auto_historical_backfill', true))
    )

    INSERT INTO core.mq_price_source_registry AS r (source_name, market_type, symbol, config_json, priority_rank)
    SELECT d.source_name, d.market_type, d.symbol, d.config_json, d.priority_rank
    FROM defaults AS d
    ON CONFLICT (source_name) DO UPDATE
    SET market_type = excluded.market_type,
        symbol = excluded.symbol,
        config_json = excluded.config_json,
        priority_rank = excluded.priority_rank,
        enabled = true,
        updated_at = now()
    WHERE p_reset_source = 'all' OR r.source_name = p_reset_source;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;

-- core.venue_price_10m: the six sparse venue tables as one relation (venue column added).
CREATE OR REPLACE VIEW core.venue_price_10m AS
SELECT
    'bitstamp' AS venue,
    t.*
FROM core.bitstamp_price_10m AS t
UNION ALL
SELECT
    'coinbase' AS venue,
    t.*
FROM core.coinbase_price_10m AS t
UNION ALL
SELECT
    'bybit' AS venue,
    t.*
FROM core.bybit_price_10m AS t
UNION ALL
SELECT
    'binance' AS venue,
    t.*
FROM core.binance_price_10m AS t
UNION ALL
SELECT
    'okx' AS venue,
    t.*
FROM core.okx_price_10m AS t
UNION ALL
SELECT
    'bitfinex' AS venue,
    t.*
FROM core.bitfinex_price_10m AS t;
COMMENT ON VIEW core.venue_price_10m IS 'All venue 10m rows, one relation; the composer reads it.';

-- core.build_venue_price_10m(p_venue, p_symbol, p_from, p_to, p_move_checkpoint)
-- Builds core.<venue>_price_10m for buckets in [p_from, p_to] from raw.venue_candles, set-based:
-- a bucket gets a row only where the venue has child candles in it (sparse, never a fake row);
-- open = first child's open, close = last child's close, high = max, low = min, volumes and trade
-- counts summed; expected/actual child counts and quality_status ('complete' when every child is
-- there, else 'partial') kept as quality metadata. Rows written from other modes (a collector's
-- websocket rows, remote pushes) are replaced only by a complete REST bucket.
-- With p_move_checkpoint, btc_price_source_<venue>:10m moves to the last complete bucket written.
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
BEGIN
    IF p_venue NOT IN ('bitstamp', 'coinbase', 'bybit', 'binance', 'okx', 'bitfinex') THEN
        RAISE EXCEPTION 'unknown price venue %', p_venue USING ERRCODE = '22023';
    END IF;

    EXECUTE format($sql$
        WITH children AS (
            SELECT
                core.bucket_10m(c.open_time) AS bucket_start_utc,
                c.*
            FROM raw.venue_candles AS c
            WHERE c.venue = $1 AND c.symbol = $2
              AND c.open_time >= core.bucket_10m($3) AND c.open_time < core.bucket_10m($4) + INTERVAL '10 minutes'
        ),

        buckets AS (
            SELECT
                ch.bucket_start_utc,
                (array_agg(ch.open_price ORDER BY ch.open_time))[1] AS open_price,
                max(ch.high_price) AS high_price,
                min(ch.low_price) AS low_price,
                (array_agg(ch.close_price ORDER BY ch.open_time DESC))[1] AS close_price,
                sum(ch.volume_base) AS volume_base,
                sum(ch.volume_quote) AS volume_quote,
                sum(ch.trade_count) AS trade_count,
                jsonb_agg(ch.raw_payload ORDER BY ch.open_time) AS raw_payload,
                max(ch.loaded_at) AS loaded_at,
                min(ch.loaded_at) AS first_loaded_at,
                600 / min(ch.interval_sec) AS expected,
                count(*)::integer AS actual
            FROM children AS ch
            GROUP BY ch.bucket_start_utc
        )

        INSERT INTO core.%1$I AS t (
            bucket_start_utc, symbol, open_price_usd, high_price_usd, low_price_usd, close_price_usd,
            volume_btc, volume_usd, trade_count, raw_payload, source_updated_at, quality_status, data_source_mode,
            expected_child_candle_count, actual_child_candle_count, first_receive_time, last_receive_time,
            disconnect_count, gap_count
        )
        SELECT
            b.bucket_start_utc, $2, b.open_price, b.high_price, b.low_price, b.close_price,
            b.volume_base, b.volume_quote, b.trade_count, b.raw_payload, b.loaded_at,
            CASE WHEN b.actual >= b.expected THEN 'complete' ELSE 'partial' END,
            'rest_child_candles', b.expected, b.actual, b.first_loaded_at, b.loaded_at, 0,
            greatest(b.expected - b.actual, 0)
        FROM buckets AS b
        ON CONFLICT (bucket_start_utc, symbol) DO UPDATE
        SET open_price_usd = excluded.open_price_usd,
            high_price_usd = excluded.high_price_usd,
            low_price_usd = excluded.low_price_usd,
            close_price_usd = excluded.close_price_usd,
            volume_btc = excluded.volume_btc,
            volume_usd = excluded.volume_usd,
            trade_count = excluded.trade_count,
            raw_payload = excluded.raw_payload,
            source_updated_at = excluded.source_updated_at,
            quality_status = excluded.quality_status,
            data_source_mode = excluded.data_source_mode,
            expected_child_candle_count = excluded.expected_child_candle_count,
            actual_child_candle_count = excluded.actual_child_candle_count,
            first_receive_time = excluded.first_receive_time,
            last_receive_time = excluded.last_receive_time,
            disconnect_count = excluded.disconnect_count,
            gap_count = excluded.gap_count
        WHERE t.data_source_mode = 'rest_child_candles' OR excluded.quality_status = 'complete'
    $sql$, p_venue || '_price_10m')
    USING p_venue, p_symbol, p_from, p_to;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows > 0 THEN
        -- The canonical price of these buckets must be composed again.
        PERFORM core.rewind_checkpoints(ARRAY['btc\_price\_canonical\_composer'], core.bucket_10m(p_from));
        PERFORM pg_notify('venue_price_ready', json_build_object('venue', p_venue, 'from_bucket', p_from)::text);
    END IF;

    IF p_move_checkpoint THEN
        EXECUTE format(
            'SELECT max(bucket_start_utc) FROM core.%I WHERE symbol = $1 AND bucket_start_utc <= core.bucket_10m($2)'
            ' AND quality_status = ''complete''',
            p_venue || '_price_10m'
        ) INTO v_last_complete USING p_symbol, p_to;
        -- Never moves back when an older range is rebuilt.
        SELECT greatest(v_last_complete, c.last_bucket_time) INTO v_last_complete
        FROM (SELECT NULL::timestamptz AS dummy) AS d
        LEFT JOIN core.sync_checkpoints AS c
            ON c.chain = 'btc' AND c.component = 'btc_price_source_' || p_venue AND c."interval" = '10m';
        IF v_last_complete IS NOT NULL THEN
            PERFORM core.set_checkpoint('btc', 'btc_price_source_' || p_venue, '10m', NULL, v_last_complete, 'ok');
        END IF;
    END IF;
    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION core.build_venue_price_10m(text, text, timestamptz, timestamptz, boolean) IS 'Build the sparse 10m rows of one venue from its child candles over a time range (idempotent).';

-- core.compose_btc_price_10m(p_method, p_from, p_to, p_max_deviation, p_min_coverage)
-- Composes the canonical price core.mq_btc_price_10m for every timeline bucket in [from, to], set-based:
--   timeline = the buckets of core.btc_primitive_10m when it has rows (timeline-complete against the
--              backbone), else every bucket from the first to the last venue bucket;
--   from     = p_from, else the composer checkpoint's last bucket (re-composed: late venue rows), else
--              the timeline's first bucket; to = p_to, else the timeline's last bucket.
-- Venue rows: the enabled registry venues, on their registry symbol. Invalid rows (non-positive price,
-- high below max(open, close, low), low above min(open, close, high), negative volume) never count.
-- Methods:
--   volume_weighted_ohlc_v1: O, H, L and C are each the volume-weighted mean over the valid rows
--     (equal weights when no row reports volume; a row without volume gets no weight while others report
--     some); volumes are summed.
--   median_filtered_v1: as v1 after leaving out stale rows (written before their bucket closed, or fewer
--     than p_min_coverage of their child candles) and rows whose close is more than p_max_deviation
--     (a share) away from the median close of the remaining rows.
-- Every left-out row is listed in excluded_sources with its reason. No counted row: NULL prices,
-- source_count 0. The price fields of core.btc_primitive_10m are refreshed from the result (they come
-- only from this table). Checkpoint btc_price_canonical_composer:10m moves in the same transaction.
-- Re-running any range yields identical rows.
CREATE OR REPLACE FUNCTION core.compose_btc_price_10m(
    p_method text DEFAULT 'volume_weighted_ohlc_v1',
    p_from timestamptz DEFAULT NULL,
    p_to timestamptz DEFAULT NULL,
    p_max_deviation numeric DEFAULT 0.02,
    p_min_coverage numeric DEFAULT 0.5
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
    IF p_method NOT IN ('volume_weighted_ohlc_v1', 'median_filtered_v1') THEN
        RAISE EXCEPTION 'unknown composition method %', p_method USING ERRCODE = '22023';
    END IF;

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
    WHERE c.chain = 'btc' AND c.component = 'btc_price_canonical_composer' AND c."interval" = '10m'
    FOR UPDATE;
    v_start := coalesce(core.bucket_10m(p_from), v_checkpoint, v_first);
    v_start := greatest(v_start, v_first);
    v_end := least(coalesce(core.bucket_10m(p_to), v_last), v_last);
    IF v_end < v_start THEN
        RETURN;
    END IF;

    INSERT INTO core.mq_btc_price_10m AS m (
        bucket_start_utc, source_count, source_names, composition_method, open_price_usd, high_price_usd,
        low_price_usd, close_price_usd, volume_btc, volume_usd, excluded_sources
    )
    WITH timeline AS (
        SELECT g.bucket_start_utc
        FROM generate_series(v_start, v_end, INTERVAL '10 minutes') AS g (bucket_start_utc)
        WHERE NOT v_backbone
        UNION ALL
        SELECT p.bucket_start_utc
        FROM core.btc_primitive_10m AS p
        WHERE v_backbone AND p.bucket_start_utc BETWEEN v_start AND v_end
    ),

    candidates AS (
        SELECT
            v.venue,
            v.bucket_start_utc,
            v.open_price_usd AS o,
            v.high_price_usd AS h,
            v.low_price_usd AS l,
            v.close_price_usd AS c,
            v.volume_btc,
            v.volume_usd,
            CASE
                WHEN NOT (v.open_price_usd > 0 AND v.high_price_usd > 0 AND v.low_price_usd > 0
                          AND v.close_price_usd > 0) THEN 'invalid: non-positive price'
                WHEN v.high_price_usd < greatest(v.open_price_usd, v.close_price_usd, v.low_price_usd)
                    OR v.low_price_usd > least(v.open_price_usd, v.close_price_usd, v.high_price_usd)
                    THEN 'invalid: inconsistent OHLC'
                WHEN v.volume_btc < 0 OR v.volume_usd < 0 THEN 'invalid: negative volume'
                WHEN p_method = 'median_filtered_v1'
                    AND (v.source_updated_at < v.bucket_start_utc + INTERVAL '10 minutes'
                         OR v.actual_child_candle_count::numeric
                         < p_min_coverage * nullif(v.expected_child_candle_count, 0))
                    THEN 'stale: written before the bucket closed or too few child candles'
            END AS reason
        FROM core.venue_price_10m AS v
        INNER JOIN core.mq_price_source_registry AS r
            ON v.venue = r.source_name AND v.symbol = r.symbol AND r.enabled
        WHERE v.bucket_start_utc BETWEEN v_start AND v_end
    ),

    medians AS (
        SELECT
            cd.bucket_start_utc,
            (percentile_disc(0.5) WITHIN GROUP (ORDER BY cd.c)
             + percentile_disc(0.5) WITHIN GROUP (ORDER BY cd.c DESC)) / 2 AS median_close
        FROM candidates AS cd
        WHERE cd.reason IS NULL
        GROUP BY cd.bucket_start_utc
    ),

    judged AS (
        SELECT
            cd.venue,
            cd.bucket_start_utc,
            cd.o,
            cd.h,
            cd.l,
            cd.c,
            cd.volume_btc,
            cd.volume_usd,
            coalesce(cd.reason, CASE
                WHEN p_method = 'median_filtered_v1' AND abs(cd.c / md.median_close - 1) > p_max_deviation
                    THEN format('outlier: close %s is %s%% from the cross-venue median %s',
                                cd.c, round(100 * (cd.c / md.median_close - 1), 2), md.median_close)
            END) AS reason
        FROM candidates AS cd
        LEFT JOIN medians AS md ON cd.bucket_start_utc = md.bucket_start_utc
    ),

    weighted AS (
        SELECT
            j.*,
            CASE
                WHEN j.reason IS NOT NULL THEN NULL
                WHEN coalesce(sum(j.volume_btc) FILTER (WHERE j.reason IS NULL AND j.volume_btc > 0)
                              OVER (PARTITION BY j.bucket_start_utc), 0) > 0
                    THEN coalesce(j.volume_btc, 0)
                ELSE 1
            END AS w
        FROM judged AS j
    ),

    composed AS (
        SELECT
            wt.bucket_start_utc,
            (count(*) FILTER (WHERE wt.w > 0))::integer AS source_count,
            coalesce(array_agg(wt.venue ORDER BY wt.venue) FILTER (WHERE wt.w > 0), '{}') AS source_names,
            round(sum(wt.w * wt.o) FILTER (WHERE wt.w > 0) / nullif(sum(wt.w) FILTER (WHERE wt.w > 0), 0), 8) AS o,
            round(sum(wt.w * wt.h) FILTER (WHERE wt.w > 0) / nullif(sum(wt.w) FILTER (WHERE wt.w > 0), 0), 8) AS h,
            round(sum(wt.w * wt.l) FILTER (WHERE wt.w > 0) / nullif(sum(wt.w) FILTER (WHERE wt.w > 0), 0), 8) AS l,
            round(sum(wt.w * wt.c) FILTER (WHERE wt.w > 0) / nullif(sum(wt.w) FILTER (WHERE wt.w > 0), 0), 8) AS c,
            sum(wt.volume_btc) FILTER (WHERE wt.w > 0) AS volume_btc,
            sum(wt.volume_usd) FILTER (WHERE wt.w > 0) AS volume_usd,
            coalesce(jsonb_agg(jsonb_build_object(
                'source', wt.venue,
                'reason', coalesce(wt.reason, 'no weight: no volume reported while other venues report volume')
            ) ORDER BY wt.venue) FILTER (WHERE wt.w IS NULL OR wt.w = 0), '[]') AS excluded_sources
        FROM weighted AS wt
        GROUP BY wt.bucket_start_utc
    )

    SELECT
        tl.bucket_start_utc,
        coalesce(cp.source_count, 0),
        coalesce(cp.source_names, '{}'),
        p_method,
        cp.o,
        cp.h,
        cp.l,
        cp.c,
        cp.volume_btc,
        cp.volume_usd,
        coalesce(cp.excluded_sources, '[]')
    FROM timeline AS tl
    LEFT JOIN composed AS cp ON tl.bucket_start_utc = cp.bucket_start_utc
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
        excluded_sources = excluded.excluded_sources;
    GET DIAGNOSTICS v_rows = ROW_COUNT;

    -- The backbone's price fields come only from the canonical table.
    UPDATE core.btc_primitive_10m AS p
    SET open_price_usd = m.open_price_usd,
        high_price_usd = m.high_price_usd,
        low_price_usd = m.low_price_usd,
        close_price_usd = m.close_price_usd,
        market_cap_usd = core.sat_to_usd(p.supply_total_sat, m.close_price_usd)
    FROM core.mq_btc_price_10m AS m
    WHERE p.bucket_start_utc = m.bucket_start_utc
      AND m.bucket_start_utc BETWEEN v_start AND v_end
      AND (p.close_price_usd, p.open_price_usd, p.high_price_usd, p.low_price_usd)
          IS DISTINCT FROM (m.close_price_usd, m.open_price_usd, m.high_price_usd, m.low_price_usd);

    PERFORM core.set_checkpoint('btc', 'btc_price_canonical_composer', '10m', NULL, v_end, 'ok');
    -- Rollups and metrics redo every period from v_start on (prices and the backbone's price fields changed).
    PERFORM core.rewind_checkpoints(ARRAY['rollup\_%', 'btc\_metric\_%'], v_start);
    PERFORM pg_notify('price_ready', json_build_object('from_bucket', v_start, 'to_bucket', v_end)::text);

    from_bucket := v_start;
    to_bucket := v_end;
    bucket_count := v_rows;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION core.compose_btc_price_10m(text, timestamptz, timestamptz, numeric, numeric) IS 'Compose the canonical 10m BTC/USD price from the venue tables over a range, one set-based UPSERT.';
