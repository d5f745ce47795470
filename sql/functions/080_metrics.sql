-- Derived metrics: the period views they read, one function per metric, the registry and its runner.
-- USD valuation rule (all intervals, the Coin Metrics convention): a native amount of a period times
-- the canonical close of that period (for 1h/24h the close of its last 10m bucket with a price); NULL
-- when the period has no price. Never a fake 0.

-- core.btc_primitive_periods: the backbone and its rollups as one relation, interval-neutral names.
-- Filter on "interval": the planner then reads only that branch.
CREATE OR REPLACE VIEW core.btc_primitive_periods AS
SELECT
    '10m'::text AS "interval",
    p.bucket_start_utc,
    600 AS period_sec,
    p.block_count,
    p.issued_sat_10m AS issued_sat,
    p.fees_sat_10m AS fees_sat,
    p.miner_revenue_sat_10m AS miner_revenue_sat,
    p.transferred_sat_10m AS transferred_sat,
    p.non_coinbase_tx_count_10m AS non_coinbase_tx_count,
    p.fee_observed_tx_count_10m AS fee_observed_tx_count,
    p.avg_fee_sat_10m AS avg_fee_sat,
    p.avg_feerate_sat_vb_10m AS avg_feerate_sat_vb,
    p.min_feerate_sat_vb_10m AS min_feerate_sat_vb,
    p.max_feerate_sat_vb_10m AS max_feerate_sat_vb,
    p.supply_total_sat
FROM core.btc_primitive_10m AS p
UNION ALL
SELECT
    '1h'::text AS "interval",
    h.bucket_start_utc,
    3600 AS period_sec,
    h.block_count,
    h.issued_sat,
    h.fees_sat,
    h.miner_revenue_sat,
    h.transferred_sat,
    h.non_coinbase_tx_count,
    h.fee_observed_tx_count,
    h.avg_fee_sat,
    h.avg_feerate_sat_vb,
    h.min_feerate_sat_vb,
    h.max_feerate_sat_vb,
    h.supply_total_sat
FROM core.btc_primitive_1h AS h
UNION ALL
SELECT
    '24h'::text AS "interval",
    d.bucket_start_utc,
    86400 AS period_sec,
    d.block_count,
    d.issued_sat,
    d.fees_sat,
    d.miner_revenue_sat,
    d.transferred_sat,
    d.non_coinbase_tx_count,
    d.fee_observed_tx_count,
    d.avg_fee_sat,
    d.avg_feerate_sat_vb,
    d.min_feerate_sat_vb,
    d.max_feerate_sat_vb,
    d.supply_total_sat
FROM core.btc_primitive_24h AS d;
COMMENT ON VIEW core.btc_primitive_periods IS 'btc_primitive_10m/1h/24h as one relation with interval-neutral names (what the metric functions read).';

-- core.btc_price_periods: the canonical price and its rollups as one relation.
CREATE OR REPLACE VIEW core.btc_price_periods AS
SELECT
    '10m'::text AS "interval",
    m.bucket_start_utc,
    m.close_price_usd
FROM core.mq_btc_price_10m AS m
UNION ALL
SELECT
    '1h'::text AS "interval",
    h.bucket_start_utc,
    h.close_price_usd
FROM core.mq_btc_price_1h AS h
UNION ALL
SELECT
    '24h'::text AS "interval",
    d.bucket_start_utc,
    d.close_price_usd
FROM core.mq_btc_price_24h AS d;
COMMENT ON VIEW core.btc_price_periods IS 'mq_btc_price_10m/1h/24h closes as one relation (for USD valuation).';

-- core.btc_priced_periods: each backbone period with the canonical close of the same period (NULL when
-- it has none): what the metric functions value native amounts with.
CREATE OR REPLACE VIEW core.btc_priced_periods AS
SELECT
    p.*,
    m.close_price_usd
FROM core.btc_primitive_periods AS p
LEFT JOIN core.btc_price_periods AS m
    ON p."interval" = m."interval" AND p.bucket_start_utc = m.bucket_start_utc;
COMMENT ON VIEW core.btc_priced_periods IS 'Backbone periods (10m/1h/24h) with their canonical close price.';

-- Every metric function has the same shape: (p_interval '10m'|'1h'|'24h', p_from, p_to, p_output)
-- writes one row per backbone period in [p_from, p_to] into core.<p_output> (UPSERT) and returns
-- the number of rows. Re-running a range yields identical rows. core.run_metric calls them.

-- core.upsert_period_rows(p_output, p_select, p_interval, p_from, p_to): the write every metric function
-- shares. Runs p_select (its $1, $2, $3 = p_interval, p_from, p_to; one column per column of
-- core.<p_output>, named as it) and upserts its rows into core.<p_output>: a row whose bucket_start_utc is
-- there already gets every other column replaced. The column list is the table's own (pg_attribute), so a
-- column the SELECT does not name fails the call. Returns the number of rows written.
CREATE OR REPLACE FUNCTION core.upsert_period_rows(
    p_output text, p_select text, p_interval text, p_from timestamptz, p_to timestamptz
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_cols text;
    v_values text;
    v_set text;
    v_rows bigint;
BEGIN
    SELECT
        string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum),
        string_agg(format('s.%I', a.attname), ', ' ORDER BY a.attnum),
        string_agg(format('%1$I = excluded.%1$I', a.attname), ', ' ORDER BY a.attnum)
    INTO v_cols, v_values, v_set
    FROM pg_attribute AS a
    WHERE a.attrelid = format('core.%I', p_output)::regclass
      AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> 'bucket_start_utc';
    EXECUTE format(
        'INSERT INTO core.%I AS t (bucket_start_utc, %s) SELECT s.bucket_start_utc, %s FROM (%s) AS s'
        ' ON CONFLICT (bucket_start_utc) DO UPDATE SET %s',
        p_output, v_cols, v_values, p_select, v_set
    ) USING p_interval, p_from, p_to;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION core.upsert_period_rows(text, text, text, timestamptz, timestamptz) IS 'Upsert the rows of a metric SELECT into core.<p_output> on bucket_start_utc (every other column replaced); returns the row count.';

-- api fields of core.btc_market_cap_{10m,1h,24h}: *
-- core.metric_market_cap_usd: supply at the period's end x the period's close.
CREATE OR REPLACE FUNCTION core.metric_market_cap_usd(
    p_interval text, p_from timestamptz, p_to timestamptz, p_output text
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN core.upsert_period_rows(p_output, $sql$
        SELECT
            p.bucket_start_utc,
            p.supply_total_sat,
            p.close_price_usd,
            core.market_cap_usd(p.supply_total_sat, p.close_price_usd) AS market_cap_usd
        FROM core.btc_priced_periods AS p
        WHERE p."interval" = $1 AND p.bucket_start_utc BETWEEN $2 AND $3
    $sql$, p_interval, p_from, p_to);
END
$$;
COMMENT ON FUNCTION core.metric_market_cap_usd(text, timestamptz, timestamptz, text) IS 'market_cap_usd = supply_total_sat / 1e8 x close of the period.';

-- api fields of core.btc_nvt_{10m,1h,24h}: *
-- core.metric_nvt_raw: market cap (from the market_cap_usd metric of the same interval: the table
-- metric_registry names as its output) over the USD value transferred in the period
-- (transferred_sat / 1e8 x close). NULL when nothing was transferred or there is no price.
CREATE OR REPLACE FUNCTION core.metric_nvt_raw(
    p_interval text, p_from timestamptz, p_to timestamptz, p_output text
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_market_cap text;
BEGIN
    SELECT r.output_table INTO v_market_cap
    FROM core.metric_registry AS r
    WHERE r.metric_name = 'market_cap_usd' AND r."interval" = p_interval;
    IF v_market_cap IS NULL THEN
        RAISE EXCEPTION 'nvt_raw reads market_cap_usd at %, which is not in core.metric_registry', p_interval
            USING ERRCODE = '22023';
    END IF;
    RETURN core.upsert_period_rows(p_output, format($sql$
        SELECT
            v.bucket_start_utc,
            v.market_cap_usd,
            v.transferred_sat,
            v.close_price_usd,
            v.transferred_value_usd,
            core.share(v.market_cap_usd, v.transferred_value_usd) AS nvt_raw
        FROM (
            SELECT
                p.bucket_start_utc,
                mc.market_cap_usd,
                p.transferred_sat,
                mc.close_price_usd,
                core.sat_to_usd(p.transferred_sat, mc.close_price_usd) AS transferred_value_usd
            FROM core.btc_primitive_periods AS p
            LEFT JOIN core.%I AS mc ON p.bucket_start_utc = mc.bucket_start_utc
            WHERE p."interval" = $1 AND p.bucket_start_utc BETWEEN $2 AND $3
        ) AS v
    $sql$, v_market_cap), p_interval, p_from, p_to);
END
$$;
COMMENT ON FUNCTION core.metric_nvt_raw(text, timestamptz, timestamptz, text) IS 'nvt_raw = market_cap_usd / (transferred_sat / 1e8 x close) per period.';

-- api fields of core.btc_miner_revenue_{10m,1h,24h}: *
-- core.metric_miner_revenue: what miners earned in the period, split into subsidy (issued) and fees,
-- in sat and USD, and the fee share of revenue (NULL when revenue is 0).
CREATE OR REPLACE FUNCTION core.metric_miner_revenue(
    p_interval text, p_from timestamptz, p_to timestamptz, p_output text
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN core.upsert_period_rows(p_output, $sql$
        SELECT
            p.bucket_start_utc,
            p.block_count,
            p.miner_revenue_sat,
            p.issued_sat AS subsidy_sat,
            p.fees_sat,
            core.share(p.fees_sat, p.miner_revenue_sat) AS fee_share_of_revenue,
            p.close_price_usd,
            core.sat_to_usd(p.miner_revenue_sat, p.close_price_usd) AS miner_revenue_usd,
            core.sat_to_usd(p.issued_sat, p.close_price_usd) AS subsidy_usd,
            core.sat_to_usd(p.fees_sat, p.close_price_usd) AS fees_usd
        FROM core.btc_priced_periods AS p
        WHERE p."interval" = $1 AND p.bucket_start_utc BETWEEN $2 AND $3
    $sql$, p_interval, p_from, p_to);
END
$$;
COMMENT ON FUNCTION core.metric_miner_revenue(text, timestamptz, timestamptz, text) IS 'Miner revenue per period: subsidy vs fees, sat and USD, fee share.';

-- api fields of core.btc_fee_metrics_{10m,1h,24h}: *
-- core.metric_fee_metrics: fees of the period's non-coinbase transactions. Total and mean from the
-- backbone (fees include the coinbase fallback where a block's fees were unknown); the exact median
-- fee, median feerate and the fee / feerate percentiles p10, p25, p75, p90 (rules: core.btc_fee_stats,
-- docs/data-contract.md): for 10m the backbone's (computed once, by the 10m builder), for 1h/24h
-- core.btc_fee_stats_of_blocks over the period's blocks (their per-block fee facts; no transaction is
-- read); NULL without fee observations. Min/max feerate; fee share of miner revenue; USD at the
-- period's close.
CREATE OR REPLACE FUNCTION core.metric_fee_metrics(
    p_interval text, p_from timestamptz, p_to timestamptz, p_output text
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN core.upsert_period_rows(p_output, $sql$
        WITH period_blocks AS (
            SELECT
                core.period_start($1, pb.bucket_start_utc) AS bucket_start_utc,
                array_agg(pb.height ORDER BY pb.height) FILTER (WHERE ff.fee_tx_count > 0) AS fee_heights
            FROM core.btc_primitive_block AS pb
            INNER JOIN core.btc_block_fee_facts AS ff ON pb.height = ff.height
            WHERE $1 <> '10m' AND pb.height > 0
              AND pb.bucket_start_utc >= $2 AND pb.bucket_start_utc < $3 + core.period_width($1)
            GROUP BY core.period_start($1, pb.bucket_start_utc)
        ),

        -- MATERIALIZED: each period's statistics are selected once. Inlined, the planner may put this
        -- subquery on the inner side of a nested loop (a rollup table analyzed while empty, plain
        -- PostgreSQL) and select every period's statistics again for each output row (bench/scale.py:
        -- 280 s against 8 s on TimescaleDB, docs/benchmarks.md).
        stats AS MATERIALIZED (
            SELECT
                b.bucket_start_utc,
                s.median_fee_sat,
                s.median_feerate_sat_vb,
                s.fee_p10_sat,
                s.fee_p25_sat,
                s.fee_p75_sat,
                s.fee_p90_sat,
                s.feerate_p10_sat_vb,
                s.feerate_p25_sat_vb,
                s.feerate_p75_sat_vb,
                s.feerate_p90_sat_vb
            FROM period_blocks AS b
            LEFT JOIN LATERAL core.btc_fee_stats_of_blocks(b.fee_heights) AS s ON true
            UNION ALL
            SELECT
                t.bucket_start_utc,
                t.median_fee_sat_10m AS median_fee_sat,
                t.median_feerate_sat_vb_10m AS median_feerate_sat_vb,
                t.fee_p10_sat_10m AS fee_p10_sat,
                t.fee_p25_sat_10m AS fee_p25_sat,
                t.fee_p75_sat_10m AS fee_p75_sat,
                t.fee_p90_sat_10m AS fee_p90_sat,
                t.feerate_p10_sat_vb_10m AS feerate_p10_sat_vb,
                t.feerate_p25_sat_vb_10m AS feerate_p25_sat_vb,
                t.feerate_p75_sat_vb_10m AS feerate_p75_sat_vb,
                t.feerate_p90_sat_vb_10m AS feerate_p90_sat_vb
            FROM core.btc_primitive_10m AS t
            WHERE $1 = '10m' AND t.bucket_start_utc BETWEEN $2 AND $3
        )

        SELECT
            p.bucket_start_utc,
            p.non_coinbase_tx_count,
            p.fees_sat AS total_fee_sat,
            p.avg_fee_sat,
            st.median_fee_sat,
            p.fee_observed_tx_count,
            p.avg_feerate_sat_vb,
            st.median_feerate_sat_vb,
            p.min_feerate_sat_vb,
            p.max_feerate_sat_vb,
            core.share(p.fees_sat, p.miner_revenue_sat) AS fee_share_of_revenue,
            p.close_price_usd,
            core.sat_to_usd(p.fees_sat, p.close_price_usd) AS total_fee_usd,
            core.sat_to_usd(p.avg_fee_sat, p.close_price_usd) AS avg_fee_usd,
            core.sat_to_usd(st.median_fee_sat, p.close_price_usd) AS median_fee_usd,
            st.fee_p10_sat,
            st.fee_p25_sat,
            st.fee_p75_sat,
            st.fee_p90_sat,
            st.feerate_p10_sat_vb,
            st.feerate_p25_sat_vb,
            st.feerate_p75_sat_vb,
            st.feerate_p90_sat_vb
        FROM core.btc_priced_periods AS p
        LEFT JOIN stats AS st ON p.bucket_start_utc = st.bucket_start_utc
        WHERE p."interval" = $1 AND p.bucket_start_utc BETWEEN $2 AND $3
    $sql$, p_interval, p_from, p_to);
END
$$;
COMMENT ON FUNCTION core.metric_fee_metrics(text, timestamptz, timestamptz, text) IS 'Fee totals, means, exact medians and percentiles (from per-block fee facts) and feerates per period, sat and USD.';

-- api fields of core.btc_hash_rate_{10m,1h,24h}: *
-- core.metric_hash_rate: hash rate implied by the blocks of the period: the expected hashes of each
-- block (difficulty x 2^32) summed, over the period's seconds (H/s; EH/s beside it), and the mean
-- difficulty of those blocks. NULL when the period has no block (no observation, not zero hashing).
CREATE OR REPLACE FUNCTION core.metric_hash_rate(
    p_interval text, p_from timestamptz, p_to timestamptz, p_output text
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN core.upsert_period_rows(p_output, $sql$
        WITH work AS (
            SELECT
                core.period_start($1, pb.bucket_start_utc) AS bucket_start_utc,
                sum(pb.difficulty) AS difficulty_sum,
                count(*) AS n
            FROM core.btc_primitive_block AS pb
            WHERE pb.height > 0
              AND pb.bucket_start_utc >= $2 AND pb.bucket_start_utc < $3 + core.period_width($1)
            GROUP BY 1
        )

        SELECT
            p.bucket_start_utc,
            p.block_count,
            p.period_sec,
            round(w.difficulty_sum / w.n, 8) AS difficulty_mean,
            round(core.btc_hashrate_hs(w.difficulty_sum, p.period_sec), 2) AS hash_rate_hs,
            round(core.btc_hashrate_hs(w.difficulty_sum, p.period_sec) / 1e18, 8) AS hash_rate_ehs
        FROM core.btc_primitive_periods AS p
        LEFT JOIN work AS w ON p.bucket_start_utc = w.bucket_start_utc
        WHERE p."interval" = $1 AND p.bucket_start_utc BETWEEN $2 AND $3
    $sql$, p_interval, p_from, p_to);
END
$$;
COMMENT ON FUNCTION core.metric_hash_rate(text, timestamptz, timestamptz, text) IS 'Hash rate estimate: sum of block difficulty x 2^32 over the period seconds.';

-- core.metric_interval_dependencies(): per interval, the checkpoints ('component:interval', as
-- metric_registry.dependencies holds them) of the backbone's periods and of the canonical price's: what a
-- metric of that interval may not run past. The one list (every metric seed takes it from here). Pure.
CREATE OR REPLACE FUNCTION core.metric_interval_dependencies()
RETURNS TABLE ("interval" text, primitive_checkpoint text, price_checkpoint text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    VALUES
    (
        '10m',
        core.checkpoint_component('primitive_10m') || ':10m',
        core.checkpoint_component('price_composer') || ':10m'
    ),
    (
        '1h',
        core.checkpoint_component('rollup', 'btc_primitive_1h') || ':1h',
        core.checkpoint_component('rollup', 'mq_btc_price_1h') || ':1h'
    ),
    (
        '24h',
        core.checkpoint_component('rollup', 'btc_primitive_24h') || ':24h',
        core.checkpoint_component('rollup', 'mq_btc_price_24h') || ':24h'
    )
$$;

-- api fields of core.metric_registry: *
-- core.seed_metric_registry(p_reset): the seeded metrics at 10m, 1h and 24h. Re-seeding inserts what
-- is missing and keeps every edit; p_reset = '<metric_name>' (or 'all') restores defaults. Returns
-- the rows inserted or reset.
CREATE OR REPLACE FUNCTION core.seed_metric_registry(p_reset text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_rows integer;
BEGIN
    WITH metrics (metric_name, factor, sql_function, stem, needs_price, extra_dependency, description) AS (
        VALUES
        ('market_cap_usd', 'market', 'core.metric_market_cap_usd', 'market_cap', true, NULL,
         'supply_total_sat / 1e8 x canonical close of the period'),
        ('nvt_raw', 'network', 'core.metric_nvt_raw', 'nvt', false, 'market_cap_usd',
         'market cap / USD value transferred (transferred_sat / 1e8 x close) in the period'),
        ('miner_revenue', 'miner', 'core.metric_miner_revenue', 'miner_revenue', true, NULL,
         'miner revenue, subsidy and fees in sat and USD, fee share of revenue'),
        ('fee_metrics', 'fee', 'core.metric_fee_metrics', 'fee_metrics', true, NULL,
         'total/avg/median fee in sat and USD, mean/median/min/max feerate, fee share of miner revenue'),
        ('hash_rate', 'miner', 'core.metric_hash_rate', 'hash_rate', false, NULL,
         'hash rate estimate: sum of block difficulty x 2^32 / period seconds')
    ),

    intervals ("interval", primitive_checkpoint, price_checkpoint) AS (
        SELECT d."interval", d.primitive_checkpoint, d.price_checkpoint
        FROM core.metric_interval_dependencies() AS d
    ),

    defaults AS (
        SELECT
            m.metric_name,
            m.factor,
            i."interval",
            m.sql_function,
            format('btc_%s_%s', m.stem, i."interval") AS output_table,
            m.description,
            ARRAY[i.primitive_checkpoint]
            || CASE WHEN m.needs_price THEN ARRAY[i.price_checkpoint] ELSE '{}' END
            || CASE
                WHEN m.extra_dependency IS NOT NULL
                    THEN ARRAY[
                        core.checkpoint_component('metric', m.extra_dependency, i."interval") || ':' || i."interval"
                    ]
                ELSE '{}'
            END AS dependencies
        FROM metrics AS m
        CROSS JOIN intervals AS i
    )

    INSERT INTO core.metric_registry AS r (
        metric_name, factor, "interval", sql_function, output_table, dependencies, description
    )
    SELECT d.metric_name, d.factor, d."interval", d.sql_function, d.output_table, d.dependencies, d.description
    FROM defaults AS d
    ON CONFLICT (metric_name, "interval") DO UPDATE
    SET factor = excluded.factor,
        sql_function = excluded.sql_function,
        output_table = excluded.output_table,
        dependencies = excluded.dependencies,
        description = excluded.description,
        enabled = true,
        version = 1,
        updated_at = now()
    WHERE p_reset = 'all' OR r.metric_name = p_reset;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    -- The coin-age metrics (085_coin_age_metrics.sql; some are daily only).
    v_rows := v_rows + core.seed_coin_age_metric_registry(p_reset);
    RETURN v_rows;
END
$$;

-- core.run_metric(p_metric, p_interval, p_max_periods): one incremental step of one registered metric.
--   from = the metric's checkpoint btc_metric_<name>_<interval>:<interval> (its last period is
--          recomputed: it may have been partial), else the first backbone period of the interval;
--   to   = the oldest last_bucket_time among its dependencies' checkpoints (it never runs past what
--          they cover), capped at from + p_max_periods - 1 periods when given.
-- Calls the registered function over [from, to] and moves the checkpoint in the same transaction. A
-- failure is caught: the checkpoint gets status error and the message, nothing of the metric is
-- written, and the status row says so (callers go on with the other metrics).
-- status: ok | partial (capped; call again) | up_to_date | waiting (a dependency never ran) | disabled | error.
CREATE OR REPLACE FUNCTION core.run_metric(p_metric text, p_interval text, p_max_periods integer DEFAULT NULL)
RETURNS TABLE (status text, from_bucket timestamptz, to_bucket timestamptz, row_count bigint, message text)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    r core.metric_registry;
    v_component text;
    v_checkpoint timestamptz;
    v_missing text;
    v_dep_end timestamptz;
    v_end timestamptz;
    v_sqlstate text;
BEGIN
    SELECT * INTO r FROM core.metric_registry AS g WHERE g.metric_name = p_metric AND g."interval" = p_interval;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'metric % at % is not in core.metric_registry', p_metric, p_interval USING ERRCODE = '22023';
    END IF;
    IF NOT r.enabled THEN
        status := 'disabled';
        RETURN NEXT;
        RETURN;
    END IF;
    v_component := core.checkpoint_component('metric', p_metric, p_interval);

    -- Locked until commit: an upstream rewrite that rewinds this checkpoint meanwhile waits, then applies.
    SELECT c.last_bucket_time INTO v_checkpoint
    FROM core.sync_checkpoints AS c
    WHERE c.chain = r.chain AND c.component = v_component AND c."interval" = p_interval
    FOR UPDATE;

    SELECT
        string_agg(d.dep, ', ') FILTER (WHERE c.last_bucket_time IS NULL),
        min(c.last_bucket_time)
    INTO v_missing, v_dep_end
    FROM unnest(r.dependencies) AS d (dep)
    LEFT JOIN core.sync_checkpoints AS c
        ON c.chain = r.chain AND c.component || ':' || c."interval" = d.dep;
    IF v_missing IS NOT NULL THEN
        status := 'waiting';
        message := 'dependencies without progress: ' || v_missing;
        RETURN NEXT;
        RETURN;
    END IF;

    from_bucket := coalesce(
        core.period_start(p_interval, v_checkpoint),
        (SELECT min(p.bucket_start_utc) FROM core.btc_primitive_periods AS p WHERE p."interval" = p_interval)
    );
    v_end := core.period_start(p_interval, v_dep_end);
    IF from_bucket IS NULL OR v_end IS NULL OR from_bucket > v_end THEN
        status := 'up_to_date';
        RETURN NEXT;
        RETURN;
    END IF;
    to_bucket := v_end;
    IF p_max_periods IS NOT NULL THEN
        to_bucket := least(v_end, from_bucket + (p_max_periods - 1) * core.period_width(p_interval));
    END IF;

    BEGIN
        EXECUTE format('SELECT %s($1, $2, $3, $4)', r.sql_function)
        INTO row_count
        USING p_interval, from_bucket, to_bucket, r.output_table;
        PERFORM core.set_checkpoint(r.chain, v_component, p_interval, NULL, to_bucket, 'ok');
        status := CASE WHEN to_bucket < v_end THEN 'partial' ELSE 'ok' END;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        message := format('%s (SQLSTATE %s)', message, v_sqlstate);
        PERFORM core.checkpoint_error(r.chain, v_component, p_interval, message);
        status := 'error';
        row_count := 0;
    END;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION core.run_metric(text, text, integer) IS 'One checkpointed, dependency-bounded step of one registered metric; errors recorded, not raised.';

-- core.metric_run_order: enabled registry rows with run_rank, the order they must run in (metrics
-- that depend on other metrics after those; 10m before 1h before 24h). ORDER BY run_rank.
CREATE OR REPLACE VIEW core.metric_run_order AS
SELECT
    r.metric_name,
    r."interval",
    row_number() OVER (
        ORDER BY
            EXISTS (
                SELECT 1 FROM unnest(r.dependencies) AS d (dep)
                WHERE d.dep LIKE core.checkpoint_pattern('metric')
            ),
            core.period_width(r."interval"),
            r.metric_name
    ) AS run_rank
FROM core.metric_registry AS r
WHERE r.enabled;

-- The runner of the metrics is app/metrics.py (core.metric_run_order, then core.run_metric per step, one
-- transaction each, in chunks, stoppable between them); the in-database loop that duplicated it is gone.
DROP FUNCTION IF EXISTS core.run_metrics(text, text);
