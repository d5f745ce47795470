-- Venue price rows: the one candle validity rule, the one writer of raw.venue_candles, the one aggregate of
-- child candles into 10m rows and the one writer of core.<venue>_price_10m (REST child candles through
-- core.build_venue_price_10m, the Binance collector's child candles or finished rows locally or through the
-- internal ingest route: same checks, aggregate, precedence rule, rewind and NOTIFY), and the venue tables
-- as one view. The venues are the registry's (core.mq_price_source_registry); each has its
-- core.<venue>_price_10m table (tests/test_venue_registry.py checks the two agree).

-- core.candle_problem(open, high, low, close, volume_base, volume_quote): why an OHLCV summary (a child
-- candle, a venue 10m row) is not a real trade summary, as '<field>: <reason>', or NULL when it is one. The
-- one validity rule, checked in this order: every price present, finite and positive ('non-positive low
-- price 0'), high >= max(open, close, low) ('high 99 below max(open, close, low)'), low <= min(open, close,
-- high), reported volumes finite and non-negative ('negative volume_base -1'). field: open, high, low,
-- close, volume_base or volume_quote. Pure; one expression, inlined into the callers' queries.
CREATE OR REPLACE FUNCTION core.candle_problem(
    p_open numeric,
    p_high numeric,
    p_low numeric,
    p_close numeric,
    p_volume_base numeric DEFAULT NULL,
    p_volume_quote numeric DEFAULT NULL
)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_open IS NULL THEN 'open: missing open price'
        WHEN p_open IN ('NaN', 'Infinity') THEN 'open: non-finite open price'
        WHEN p_open <= 0 THEN 'open: non-positive open price ' || p_open::text
        WHEN p_high IS NULL THEN 'high: missing high price'
        WHEN p_high IN ('NaN', 'Infinity') THEN 'high: non-finite high price'
        WHEN p_high <= 0 THEN 'high: non-positive high price ' || p_high::text
        WHEN p_low IS NULL THEN 'low: missing low price'
        WHEN p_low IN ('NaN', 'Infinity') THEN 'low: non-finite low price'
        WHEN p_low <= 0 THEN 'low: non-positive low price ' || p_low::text
        WHEN p_close IS NULL THEN 'close: missing close price'
        WHEN p_close IN ('NaN', 'Infinity') THEN 'close: non-finite close price'
        WHEN p_close <= 0 THEN 'close: non-positive close price ' || p_close::text
        WHEN p_high < greatest(p_open, p_close, p_low)
            THEN 'high: high ' || p_high::text || ' below max(open, close, low)'
        WHEN p_low > least(p_open, p_close, p_high)
            THEN 'low: low ' || p_low::text || ' above min(open, close, high)'
        WHEN p_volume_base IN ('NaN', 'Infinity') THEN 'volume_base: non-finite volume_base'
        WHEN p_volume_base < 0 THEN 'volume_base: negative volume_base ' || p_volume_base::text
        WHEN p_volume_quote IN ('NaN', 'Infinity') THEN 'volume_quote: non-finite volume_quote'
        WHEN p_volume_quote < 0 THEN 'volume_quote: negative volume_quote ' || p_volume_quote::text
    END
$$;
COMMENT ON FUNCTION core.candle_problem(numeric, numeric, numeric, numeric, numeric, numeric) IS 'The one OHLCV validity rule (child candles, venue 10m rows, the composer): ''<field>: <reason>'' or NULL.';

-- core.candle_problem_field(problem) and core.candle_problem_reason(problem): the two parts of a
-- core.candle_problem result. Pure.
CREATE OR REPLACE FUNCTION core.candle_problem_field(p_problem text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT split_part(p_problem, ': ', 1)
$$;

CREATE OR REPLACE FUNCTION core.candle_problem_reason(p_problem text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT substr(p_problem, strpos(p_problem, ': ') + 2)
$$;

-- core.venue_price_10m: every venue table core.<venue>_price_10m as one relation (venue column added).
-- Generated from the venue tables the revisions created (one per registry venue); re-applied on upgrade.
DO $do$
DECLARE
    v_arms text;
BEGIN
    SELECT string_agg(
        format('SELECT %L AS venue, t.* FROM core.%I AS t', left(c.relname, -length('_price_10m')), c.relname),
        ' UNION ALL ' ORDER BY c.relname
    ) INTO v_arms
    FROM pg_class AS c
    INNER JOIN pg_namespace AS n ON c.relnamespace = n.oid
    WHERE
        n.nspname = 'core' AND c.relkind IN ('r', 'p') AND c.relname LIKE '%\_price\_10m'
        AND EXISTS (
            SELECT 1 FROM pg_attribute AS a
            WHERE a.attrelid = c.oid AND a.attname = 'data_source_mode' AND NOT a.attisdropped
        );
    EXECUTE 'CREATE OR REPLACE VIEW core.venue_price_10m AS ' || v_arms;
END
$do$;
COMMENT ON VIEW core.venue_price_10m IS 'All venue 10m rows, one relation (one arm per core.<venue>_price_10m table); the composer reads it.';

-- core.write_venue_candles(p_venue, p_candles): upserts child candles into raw.venue_candles, set-based.
-- p_candles: a JSON array of {symbol, interval_sec, open_time, open, high, low, close, volume_base,
-- volume_quote, trade_count, raw} (numbers as JSON strings or numbers: decoded exactly as numeric).
-- A candle failing core.candle_problem, or whose open time is off its interval grid, is not written: it is
-- returned with its position in p_candles (0-based) and the reason. A candle fetched again unchanged keeps
-- its loaded_at (re-runs change nothing); a duplicate open time within p_candles: the later one wins.
CREATE OR REPLACE FUNCTION core.write_venue_candles(p_venue text, p_candles jsonb)
RETURNS TABLE (candle_index integer, reason text)
LANGUAGE sql VOLATILE
AS $$
    WITH given AS (
        SELECT
            (e.ord - 1)::integer AS ix,
            e.c ->> 'symbol' AS symbol,
            (e.c ->> 'interval_sec')::integer AS interval_sec,
            (e.c ->> 'open_time')::timestamptz AS open_time,
            (e.c ->> 'open')::numeric AS open_price,
            (e.c ->> 'high')::numeric AS high_price,
            (e.c ->> 'low')::numeric AS low_price,
            (e.c ->> 'close')::numeric AS close_price,
            (e.c ->> 'volume_base')::numeric AS volume_base,
            (e.c ->> 'volume_quote')::numeric AS volume_quote,
            (e.c ->> 'trade_count')::integer AS trade_count,
            coalesce(e.c -> 'raw', 'null') AS raw_payload
        FROM jsonb_array_elements(p_candles) WITH ORDINALITY AS e (c, ord)
    ),

    judged AS (
        SELECT
            g.*,
            coalesce(
                core.candle_problem_reason(
                    core.candle_problem(g.open_price, g.high_price, g.low_price, g.close_price, g.volume_base,
                                        g.volume_quote)
                ),
                CASE
                    WHEN extract(EPOCH FROM g.open_time)::bigint % g.interval_sec <> 0
                        THEN format('open time %s is not on the %ss grid', g.open_time, g.interval_sec)
                END
            ) AS reason
        FROM given AS g
    ),

    written AS (
        INSERT INTO raw.venue_candles AS c (
            venue, symbol, interval_sec, open_time, open_price, high_price, low_price, close_price, volume_base,
            volume_quote, trade_count, raw_payload
        )
        SELECT DISTINCT ON (j.symbol, j.interval_sec, j.open_time)
            p_venue,
            j.symbol,
            j.interval_sec,
            j.open_time,
            j.open_price,
            j.high_price,
            j.low_price,
            j.close_price,
            j.volume_base,
            j.volume_quote,
            j.trade_count,
            j.raw_payload
        FROM judged AS j
        WHERE j.reason IS NULL
        ORDER BY j.symbol, j.interval_sec, j.open_time, j.ix DESC
        ON CONFLICT (venue, symbol, interval_sec, open_time) DO UPDATE
        SET open_price = excluded.open_price,
            high_price = excluded.high_price,
            low_price = excluded.low_price,
            close_price = excluded.close_price,
            volume_base = excluded.volume_base,
            volume_quote = excluded.volume_quote,
            trade_count = excluded.trade_count,
            raw_payload = excluded.raw_payload,
            loaded_at = excluded.loaded_at
        WHERE (c.open_price, c.high_price, c.low_price, c.close_price, c.volume_base, c.volume_quote,
               c.trade_count, c.raw_payload)
              IS DISTINCT FROM (excluded.open_price, excluded.high_price, excluded.low_price, excluded.close_price,
                                excluded.volume_base, excluded.volume_quote, excluded.trade_count,
                                excluded.raw_payload)
        RETURNING 1
    )
    -- (a data-modifying CTE always runs to completion, referenced or not)

    SELECT
        j.ix,
        j.reason
    FROM judged AS j
    WHERE j.reason IS NOT NULL
    ORDER BY j.ix
$$;
COMMENT ON FUNCTION core.write_venue_candles(text, jsonb) IS 'Upsert child candles into raw.venue_candles; the invalid ones (core.candle_problem, off-grid) are returned with their reason, not written.';

-- core.venue_price_10m_rows(p_venue, p_symbol, p_from, p_to): the 10m rows of one market's child candles in
-- raw.venue_candles for buckets in [bucket of p_from, bucket of p_to], the one aggregate: a bucket gets a
-- row only where it has child candles (sparse, never a fake row); open = first child's open, close = last
-- child's close, high = max, low = min, volumes and trade counts summed, raw_payload = the children's
-- payloads in time order; expected = 600 s / the child interval, actual = the children's count,
-- quality_status 'complete' when every child is there, else 'partial'; data_source_mode
-- 'rest_child_candles', first/last_receive_time and source_updated_at from the children's loaded_at,
-- disconnect_count 0, gap_count = expected - actual. Computed, not stored.
CREATE OR REPLACE FUNCTION core.venue_price_10m_rows(
    p_venue text, p_symbol text, p_from timestamptz, p_to timestamptz
)
RETURNS SETOF core.venue_price_10m
LANGUAGE sql STABLE
AS $$
    WITH children AS (
        SELECT
            core.bucket_10m(c.open_time) AS bucket_start_utc,
            c.*
        FROM raw.venue_candles AS c
        WHERE c.venue = p_venue AND c.symbol = p_symbol
          AND c.open_time >= core.bucket_10m(p_from)
          AND c.open_time < core.bucket_10m(p_to) + INTERVAL '10 minutes'
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

    SELECT
        p_venue,
        b.bucket_start_utc,
        p_symbol,
        b.open_price,
        b.high_price,
        b.low_price,
        b.close_price,
        b.volume_base,
        b.volume_quote,
        b.trade_count,
        b.raw_payload,
        b.loaded_at,
        CASE WHEN b.actual >= b.expected THEN 'complete' ELSE 'partial' END,
        'rest_child_candles',
        b.expected,
        b.actual,
        b.first_loaded_at,
        b.loaded_at,
        0,
        greatest(b.expected - b.actual, 0)
    FROM buckets AS b
    ORDER BY b.bucket_start_utc
$$;
COMMENT ON FUNCTION core.venue_price_10m_rows(text, text, timestamptz, timestamptz) IS 'The one aggregate of child candles into sparse 10m venue rows (REST builds and collector buckets).';

-- api fields of core.venue_price_10m: *
-- core.write_venue_price_10m(p_venue, p_rows): the one writer of core.<venue>_price_10m. p_rows: finished
-- 10m rows (the venue column of the row type is ignored: p_venue names the table), from REST child candles
-- (core.build_venue_price_10m) or from a collector (locally or through the internal ingest route).
-- Every row is checked with core.candle_problem first: one failing row raises SQLSTATE MQ004
-- 'row <position, 0-based> field <column>: <reason>' and nothing is written. A duplicate bucket and
-- symbol within p_rows: the later row wins. Precedence: a row built from REST child candles
-- (data_source_mode 'rest_child_candles') replaces a stored collector row only when it is complete;
-- every other write replaces the stored row. When rows were written, the canonical composer is rewound to
-- the oldest of their buckets and NOTIFY venue_price_ready carries {"venue", "from_bucket", "to_bucket",
-- "rows"}. Checkpoints of the sources are not moved here. Returns the number of rows written.
CREATE OR REPLACE FUNCTION core.write_venue_price_10m(p_venue text, p_rows core.venue_price_10m[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_index integer;
    v_field text;
    v_reason text;
    v_rows integer;
    v_from timestamptz;
    v_to timestamptz;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM core.mq_price_source_registry AS r WHERE r.venue = p_venue) THEN
        RAISE EXCEPTION 'unknown price venue %', p_venue USING ERRCODE = '22023';
    END IF;

    SELECT
        (r.ordinality - 1)::integer,
        CASE core.candle_problem_field(r.problem)
            WHEN 'volume_base' THEN 'volume_btc'
            WHEN 'volume_quote' THEN 'volume_usd'
            ELSE core.candle_problem_field(r.problem) || '_price_usd'
        END,
        core.candle_problem_reason(r.problem)
    INTO v_index, v_field, v_reason
    FROM (
        SELECT
            u.ordinality,
            core.candle_problem(
                u.open_price_usd, u.high_price_usd, u.low_price_usd, u.close_price_usd, u.volume_btc, u.volume_usd
            ) AS problem
        FROM unnest(p_rows) WITH ORDINALITY AS u
    ) AS r
    WHERE r.problem IS NOT NULL
    ORDER BY r.ordinality
    LIMIT 1;
    IF v_field IS NOT NULL THEN
        RAISE EXCEPTION 'row % field %: %', v_index, v_field, v_reason USING ERRCODE = 'MQ004';
    END IF;

    EXECUTE format($sql$
        WITH written AS (
            INSERT INTO core.%1$I AS t (
                bucket_start_utc, symbol, open_price_usd, high_price_usd, low_price_usd, close_price_usd,
                volume_btc, volume_usd, trade_count, raw_payload, source_updated_at, quality_status,
                data_source_mode, expected_child_candle_count, actual_child_candle_count, first_receive_time,
                last_receive_time, disconnect_count, gap_count
            )
            SELECT DISTINCT ON (r.bucket_start_utc, r.symbol)
                r.bucket_start_utc, r.symbol, r.open_price_usd, r.high_price_usd, r.low_price_usd,
                r.close_price_usd, r.volume_btc, r.volume_usd, r.trade_count, r.raw_payload, r.source_updated_at,
                r.quality_status, r.data_source_mode, r.expected_child_candle_count, r.actual_child_candle_count,
                r.first_receive_time, r.last_receive_time, r.disconnect_count, r.gap_count
            FROM unnest($1) WITH ORDINALITY AS r
            ORDER BY r.bucket_start_utc, r.symbol, r.ordinality DESC
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
            WHERE t.data_source_mode = 'rest_child_candles' OR excluded.data_source_mode <> 'rest_child_candles'
                OR excluded.quality_status = 'complete'
            RETURNING t.bucket_start_utc
        )

        SELECT count(*)::integer, min(w.bucket_start_utc), max(w.bucket_start_utc) FROM written AS w
    $sql$, p_venue || '_price_10m')
    INTO v_rows, v_from, v_to
    USING p_rows;

    IF v_rows > 0 THEN
        -- The canonical price of these buckets must be composed again.
        PERFORM core.rewind_checkpoints(ARRAY[core.checkpoint_pattern('price_composer')], v_from);
        PERFORM pg_notify('venue_price_ready', json_build_object(
            'venue', p_venue, 'from_bucket', v_from, 'to_bucket', v_to, 'rows', v_rows
        )::text);
    END IF;
    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION core.write_venue_price_10m(text, core.venue_price_10m[]) IS 'The one writer of core.<venue>_price_10m: validity (core.candle_problem), REST precedence, composer rewind and NOTIFY venue_price_ready.';

-- core.write_venue_price_10m(p_venue, p_rows jsonb): the same for a JSON array of row objects, as the
-- collector and the internal ingest route send them. A row object's keys are the table's column names (a
-- missing key is NULL): a finished row. A row with "child_candles" (a JSON array of candles as
-- core.write_venue_candles takes them, the row's symbol applying) is a collector's bucket: its candles go
-- into raw.venue_candles through core.write_venue_candles (an invalid one is left out, as from REST), its
-- OHLCV, raw payload and actual child count are core.venue_price_10m_rows' of the bucket's stored
-- candles, and the row's other keys (quality_status, data_source_mode, expected count, receive times,
-- disconnect and gap counts, source_updated_at) replace the aggregate's REST metadata.
CREATE OR REPLACE FUNCTION core.write_venue_price_10m(p_venue text, p_rows jsonb)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_children jsonb;
BEGIN
    SELECT jsonb_agg(c.candle || jsonb_build_object('symbol', e.r -> 'symbol') ORDER BY e.ord, c.ord)
    INTO v_children
    FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e (r, ord)
    CROSS JOIN LATERAL jsonb_array_elements(e.r -> 'child_candles') WITH ORDINALITY AS c (candle, ord)
    WHERE jsonb_typeof(e.r -> 'child_candles') = 'array';
    IF v_children IS NOT NULL THEN
        PERFORM core.write_venue_candles(p_venue, v_children);
    END IF;

    RETURN core.write_venue_price_10m(p_venue, ARRAY(
        SELECT
            CASE
                WHEN e.r ? 'child_candles' THEN jsonb_populate_record(
                    a, e.r - ARRAY[
                        'child_candles', 'venue', 'open_price_usd', 'high_price_usd', 'low_price_usd',
                        'close_price_usd', 'volume_btc', 'volume_usd', 'trade_count', 'raw_payload',
                        'actual_child_candle_count'
                    ]
                )
                ELSE jsonb_populate_record(NULL::core.venue_price_10m, e.r)
            END
        FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e (r, ord)
        LEFT JOIN LATERAL core.venue_price_10m_rows(
            p_venue, e.r ->> 'symbol', (e.r ->> 'bucket_start_utc')::timestamptz,
            (e.r ->> 'bucket_start_utc')::timestamptz
        ) AS a ON e.r ? 'child_candles'
        ORDER BY e.ord
    ));
END
$$;
COMMENT ON FUNCTION core.write_venue_price_10m(text, jsonb) IS 'core.write_venue_price_10m for a JSON array of finished rows or collector buckets with their child candles (collector, internal ingest route).';
