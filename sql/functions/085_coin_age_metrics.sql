-- Coin-age metrics (docs/data-contract.md "Coin-age metrics"), from the per-block UTXO facts of
-- 025_btc_utxo_facts.sql and the canonical daily close. Same shape as 080's metric functions:
-- (p_interval, p_from, p_to, p_output) writes one row per backbone period in [p_from, p_to] (UPSERT).
-- Valuation rule (Coin Metrics CapRealUSD): a coin is valued at the canonical close of the UTC day of the
-- block that created it (its last move); a spend at the close of the UTC day of the spending block. A block's
-- day is the UTC day of its median time past (its bucket's day). Undefined -> NULL, never a fake 0:
-- a block whose prevouts or creation times are unknown, a UTXO state not known from genesis, a day without
-- a close.

-- core.btc_daily_close: the canonical daily close by UTC day: mq_btc_price_24h.close_price_usd (the close of
-- the day's last priced 10m bucket) for the days its rollup has refreshed, and the same rule over
-- core.mq_btc_price_10m from the day the rollup's checkpoint is on (the forming day, or a day an upstream
-- rewrite rewound it to). So a 10m or 1h metric never waits for, nor reads a stale, daily rollup.
CREATE OR REPLACE VIEW core.btc_daily_close AS
WITH boundary AS (
    SELECT coalesce(
        (
            SELECT c.last_bucket_time FROM core.sync_checkpoints AS c
            WHERE
                c.chain = 'btc' AND c.component = core.checkpoint_component('rollup', 'mq_btc_price_24h')
                AND c."interval" = '24h'
        ),
        '-infinity'::timestamptz
    ) AS refreshed_until
)

SELECT
    (d.bucket_start_utc AT TIME ZONE 'UTC')::date AS day,
    d.close_price_usd
FROM core.mq_btc_price_24h AS d
CROSS JOIN boundary AS b
WHERE d.bucket_start_utc < b.refreshed_until
UNION ALL
SELECT
    (m.bucket_start_utc AT TIME ZONE 'UTC')::date AS day,
    (array_agg(m.close_price_usd ORDER BY m.bucket_start_utc DESC) FILTER (WHERE m.close_price_usd IS NOT NULL))[1]
        AS close_price_usd
FROM core.mq_btc_price_10m AS m
CROSS JOIN boundary AS b
WHERE m.bucket_start_utc >= b.refreshed_until
GROUP BY 1;
COMMENT ON VIEW core.btc_daily_close IS 'Canonical BTC/USD close of each UTC day (mq_btc_price_24h, or its rule over the 10m price where the rollup has not refreshed): what coins are valued at.';

-- core.btc_block_coin_age: every stored block with its day, event time and UTXO facts; unknown = its
-- coin-age facts cannot be used (no facts row, outputs or prevouts unknown, undated spends).
CREATE OR REPLACE VIEW core.btc_block_coin_age AS
SELECT
    pb.height,
    pb.bucket_start_utc,
    (pb.event_time AT TIME ZONE 'UTC')::date AS day,
    extract(EPOCH FROM pb.event_time)::bigint AS event_epoch,
    f.created_utxo_value_sat,
    f.spent_count,
    f.spent_value_sat,
    f.cdd_sat_sec,
    f.utxo_value_total_sat,
    f.utxo_value_x_created_epoch,
    f.cdd_cumulative_sat_sec,
    (
        f.height IS NULL OR f.created_utxo_value_sat IS NULL OR NOT f.prevouts_known
        OR f.spent_undated_count IS DISTINCT FROM 0
    ) AS unknown
FROM core.btc_primitive_block AS pb
LEFT JOIN core.btc_block_utxo_facts AS f ON pb.height = f.height;
COMMENT ON VIEW core.btc_block_coin_age IS 'Stored blocks with their UTXO facts, day and whether their coin-age facts are usable.';

-- core.btc_period_state_heights(p_interval, p_from, p_to): each backbone period of [p_from, p_to] with the
-- last stored block at or before its end (the state the period ends in; NULL before the first block).
CREATE OR REPLACE FUNCTION core.btc_period_state_heights(p_interval text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (bucket_start_utc timestamptz, state_height bigint)
LANGUAGE sql STABLE
AS $$
    WITH tops AS (
        SELECT core.period_start(p_interval, pb.bucket_start_utc) AS bucket_start_utc, max(pb.height) AS top
        FROM core.btc_primitive_block AS pb
        WHERE pb.bucket_start_utc >= p_from AND pb.bucket_start_utc < p_to + core.period_width(p_interval)
        GROUP BY 1
    )

    SELECT
        p.bucket_start_utc,
        -- Heights rise with buckets: the running max is the last block at or before the period's end.
        coalesce(
            max(t.top) OVER (ORDER BY p.bucket_start_utc),
            (SELECT max(pb.height) FROM core.btc_primitive_block AS pb WHERE pb.bucket_start_utc < p_from)
        )
    FROM core.btc_primitive_periods AS p
    LEFT JOIN tops AS t ON p.bucket_start_utc = t.bucket_start_utc
    WHERE p."interval" = p_interval AND p.bucket_start_utc BETWEEN p_from AND p_to
$$;
COMMENT ON FUNCTION core.btc_period_state_heights(text, timestamptz, timestamptz) IS 'Backbone periods with the height of the last block at or before their end.';

-- core.metric_realized_cap: realized cap = sum over the UTXO set of value x close of its creation day,
-- carried: the last row before the first day of p_from (days are recomputed whole: a day's close changes
-- until it ends) + per block (created value x close of the block's day - spent value x close of each spent
-- output's creation day). utxo_value_sat = the set's value at the period's end; unpriced_utxo_sat = the part
-- of it whose day has no close; realized_value_priced_usd = the priced part's realized value (exact). Then
-- realized_cap_usd (NULL unless every coin is priced and the state is known), realized_price_usd = realized
-- cap / UTXO value in BTC, market_cap_usd = supply x the period's close, mvrv = market / realized cap,
-- nupl = (market - realized cap) / market cap.
CREATE OR REPLACE FUNCTION core.metric_realized_cap(
    p_interval text, p_from timestamptz, p_to timestamptz, p_output text
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_from timestamptz := least(p_from, core.period_start('24h', p_from));
    v_utxo bigint;
    v_unpriced bigint;
    v_priced numeric;
    v_found bigint;
BEGIN
    EXECUTE format(
        'SELECT t.utxo_value_sat, t.unpriced_utxo_sat, t.realized_value_priced_usd FROM core.%I AS t'
        ' WHERE t.bucket_start_utc < $1 ORDER BY t.bucket_start_utc DESC LIMIT 1', p_output)
    INTO v_utxo, v_unpriced, v_priced USING v_from;
    GET DIAGNOSTICS v_found = ROW_COUNT;
    IF v_found = 0 THEN
        -- Nothing before: the empty set when no block lies before and the chain is stored from genesis.
        IF core.btc_coin_age_complete_from() IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM core.btc_primitive_block AS pb WHERE pb.bucket_start_utc < v_from) THEN
            v_utxo := 0;
            v_unpriced := 0;
            v_priced := 0;
        END IF;
    END IF;

    RETURN core.upsert_period_rows(p_output, format($sql$
        WITH blocks AS (
            SELECT core.period_start($1, b.bucket_start_utc) AS period, b.*
            FROM core.btc_block_coin_age AS b
            WHERE b.bucket_start_utc >= $2 AND b.bucket_start_utc < $3 + core.period_width($1)
        ),

        spent AS (
            SELECT
                s.spend_height AS height,
                sum(s.value_sat * c.close_price_usd / 100000000) AS priced_usd,
                coalesce(sum(s.value_sat) FILTER (WHERE c.close_price_usd IS NULL), 0) AS unpriced_sat
            FROM core.btc_block_spent_by_day AS s
            INNER JOIN blocks AS b ON s.spend_height = b.height
            LEFT JOIN core.btc_daily_close AS c ON s.created_day = c.day
            GROUP BY s.spend_height
        ),

        deltas AS (
            SELECT
                b.period,
                count(*) FILTER (WHERE b.unknown) AS unknown_n,
                sum(b.created_utxo_value_sat - b.spent_value_sat) AS value_sat,
                sum(coalesce(b.created_utxo_value_sat * c.close_price_usd / 100000000, 0)
                    - coalesce(sp.priced_usd, 0)) AS priced_usd,
                sum(CASE WHEN c.close_price_usd IS NULL THEN b.created_utxo_value_sat ELSE 0 END
                    - coalesce(sp.unpriced_sat, 0)) AS unpriced_sat
            FROM blocks AS b
            LEFT JOIN core.btc_daily_close AS c ON b.day = c.day
            LEFT JOIN spent AS sp ON b.height = sp.height
            GROUP BY b.period
        ),

        running AS (
            SELECT
                p.bucket_start_utc,
                p.supply_total_sat,
                p.close_price_usd,
                sum(coalesce(d.unknown_n, 0)) OVER w AS unknown_n,
                %1$L::bigint + sum(coalesce(d.value_sat, 0)) OVER w AS utxo_value_sat,
                %2$L::bigint + sum(coalesce(d.unpriced_sat, 0)) OVER w AS unpriced_sat,
                %3$L::numeric + sum(coalesce(d.priced_usd, 0)) OVER w AS priced_usd
            FROM core.btc_priced_periods AS p
            LEFT JOIN deltas AS d ON p.bucket_start_utc = d.period
            WHERE p."interval" = $1 AND p.bucket_start_utc BETWEEN $2 AND $3
            WINDOW w AS (ORDER BY p.bucket_start_utc)
        ),

        valued AS (
            SELECT
                r.bucket_start_utc,
                r.close_price_usd,
                CASE WHEN r.unknown_n = 0 THEN r.utxo_value_sat END AS utxo_value_sat,
                CASE WHEN r.unknown_n = 0 THEN r.unpriced_sat END AS unpriced_sat,
                CASE WHEN r.unknown_n = 0 THEN r.priced_usd END AS priced_usd,
                CASE WHEN r.unknown_n = 0 AND r.unpriced_sat = 0 THEN round(r.priced_usd, 8) END AS realized_cap_usd,
                core.market_cap_usd(r.supply_total_sat, r.close_price_usd) AS market_cap_usd
            FROM running AS r
        )

        SELECT
            v.bucket_start_utc,
            v.utxo_value_sat,
            v.unpriced_sat AS unpriced_utxo_sat,
            v.priced_usd AS realized_value_priced_usd,
            v.realized_cap_usd,
            core.share(v.realized_cap_usd * 100000000, v.utxo_value_sat) AS realized_price_usd,
            v.close_price_usd,
            v.market_cap_usd,
            core.share(v.market_cap_usd, v.realized_cap_usd) AS mvrv,
            core.share(v.market_cap_usd - v.realized_cap_usd, v.market_cap_usd) AS nupl
        FROM valued AS v
    $sql$, v_utxo, v_unpriced, v_priced), p_interval, v_from, p_to);
END
$$;
COMMENT ON FUNCTION core.metric_realized_cap(text, timestamptz, timestamptz, text) IS 'Realized cap (Coin Metrics CapRealUSD: creation-day close), realized price, MVRV, NUPL per period.';

-- core.metric_sopr: the outputs the period's blocks spent, valued at the close of the spending block's day
-- (spent_value_usd) and of their creation day (spent_realized_value_usd); sopr = their ratio; the adj_*
-- columns and asopr leave out outputs spent less than one hour after their creation; realized profit / loss
-- = sum of value x (spend close - creation close) over the spends where it is positive / negative (loss as
-- a positive amount), net = profit - loss. No spend: counts and USD 0, ratios NULL. A block with unknown
-- facts: the period's row is NULL; a missing close: its USD values and ratios NULL.
CREATE OR REPLACE FUNCTION core.metric_sopr(
    p_interval text, p_from timestamptz, p_to timestamptz, p_output text
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN core.upsert_period_rows(p_output, $sql$
        WITH blocks AS (
            SELECT core.period_start($1, b.bucket_start_utc) AS period, b.*
            FROM core.btc_block_coin_age AS b
            WHERE b.bucket_start_utc >= $2 AND b.bucket_start_utc < $3 + core.period_width($1)
        ),

        groups AS (
            SELECT
                b.period,
                s.output_count,
                s.value_sat,
                s.value_sat - s.young_value_sat AS adj_value_sat,
                cs.close_price_usd AS spend_close,
                cc.close_price_usd AS created_close
            FROM blocks AS b
            INNER JOIN core.btc_block_spent_by_day AS s ON b.height = s.spend_height
            LEFT JOIN core.btc_daily_close AS cs ON b.day = cs.day
            LEFT JOIN core.btc_daily_close AS cc ON s.created_day = cc.day
        ),

        per_period AS (
            SELECT
                g.period,
                count(*) FILTER (WHERE g.spend_close IS NULL OR g.created_close IS NULL) AS unpriced_n,
                sum(g.output_count) AS output_count,
                sum(g.value_sat) AS value_sat,
                sum(g.adj_value_sat) AS adj_value_sat,
                sum(g.value_sat * g.spend_close / 100000000) AS value_usd,
                sum(g.value_sat * g.created_close / 100000000) AS realized_usd,
                sum(g.adj_value_sat * g.spend_close / 100000000) AS adj_value_usd,
                sum(g.adj_value_sat * g.created_close / 100000000) AS adj_realized_usd,
                sum(greatest(g.spend_close - g.created_close, 0) * g.value_sat / 100000000) AS profit_usd,
                sum(greatest(g.created_close - g.spend_close, 0) * g.value_sat / 100000000) AS loss_usd
            FROM groups AS g
            GROUP BY g.period
        ),

        unknown AS (
            SELECT b.period, count(*) FILTER (WHERE b.unknown) AS unknown_n
            FROM blocks AS b
            GROUP BY b.period
        ),

        rows AS (
            SELECT
                p.bucket_start_utc,
                coalesce(u.unknown_n, 0) = 0 AS known,
                coalesce(pp.unpriced_n, 0) = 0 AS priced,
                coalesce(pp.output_count, 0) AS output_count,
                coalesce(pp.value_sat, 0) AS value_sat,
                coalesce(pp.adj_value_sat, 0) AS adj_value_sat,
                coalesce(pp.value_usd, 0) AS value_usd,
                coalesce(pp.realized_usd, 0) AS realized_usd,
                coalesce(pp.adj_value_usd, 0) AS adj_value_usd,
                coalesce(pp.adj_realized_usd, 0) AS adj_realized_usd,
                coalesce(pp.profit_usd, 0) AS profit_usd,
                coalesce(pp.loss_usd, 0) AS loss_usd
            FROM core.btc_primitive_periods AS p
            LEFT JOIN per_period AS pp ON p.bucket_start_utc = pp.period
            LEFT JOIN unknown AS u ON p.bucket_start_utc = u.period
            WHERE p."interval" = $1 AND p.bucket_start_utc BETWEEN $2 AND $3
        )

        SELECT
            r.bucket_start_utc,
            CASE WHEN r.known THEN r.output_count END AS spent_output_count,
            CASE WHEN r.known THEN r.value_sat END AS spent_value_sat,
            CASE WHEN r.known AND r.priced THEN round(r.value_usd, 8) END AS spent_value_usd,
            CASE WHEN r.known AND r.priced THEN round(r.realized_usd, 8) END AS spent_realized_value_usd,
            CASE WHEN r.known AND r.priced THEN core.share(r.value_usd, r.realized_usd) END AS sopr,
            CASE WHEN r.known THEN r.adj_value_sat END AS adj_spent_value_sat,
            CASE WHEN r.known AND r.priced THEN round(r.adj_value_usd, 8) END AS adj_spent_value_usd,
            CASE WHEN r.known AND r.priced THEN round(r.adj_realized_usd, 8) END AS adj_spent_realized_value_usd,
            CASE WHEN r.known AND r.priced THEN core.share(r.adj_value_usd, r.adj_realized_usd) END AS asopr,
            CASE WHEN r.known AND r.priced THEN round(r.profit_usd, 8) END AS realized_profit_usd,
            CASE WHEN r.known AND r.priced THEN round(r.loss_usd, 8) END AS realized_loss_usd,
            CASE WHEN r.known AND r.priced THEN round(r.profit_usd - r.loss_usd, 8) END AS net_realized_pnl_usd
        FROM rows AS r
    $sql$, p_interval, least(p_from, core.period_start('24h', p_from)), p_to);
END
$$;
COMMENT ON FUNCTION core.metric_sopr(text, timestamptz, timestamptz, text) IS 'SOPR, adjusted SOPR (spends younger than 1 hour left out), realized profit and loss per period.';

-- core.metric_coin_days: coin days destroyed (cdd: sum of spent value in BTC x age in days, ages by median
-- time past), dormancy = cdd / spent BTC (NULL without spends), and at the period's end (the last block at
-- or before it, at that block's time T): cdd_cumulative (all coin days destroyed so far), utxo_coin_days
-- (sum over the UTXO set of value x (T - creation time)) and liveliness = cumulative cdd / (cumulative cdd +
-- utxo coin days). Price-free. NULL where a block's facts or the state are unknown.
CREATE OR REPLACE FUNCTION core.metric_coin_days(
    p_interval text, p_from timestamptz, p_to timestamptz, p_output text
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN core.upsert_period_rows(p_output, $sql$
        WITH flows AS (
            SELECT
                core.period_start($1, b.bucket_start_utc) AS period,
                count(*) FILTER (WHERE b.unknown) AS unknown_n,
                sum(b.spent_value_sat) AS spent_value_sat,
                sum(b.cdd_sat_sec) AS cdd_sat_sec
            FROM core.btc_block_coin_age AS b
            WHERE b.bucket_start_utc >= $2 AND b.bucket_start_utc < $3 + core.period_width($1)
            GROUP BY 1
        ),

        rows AS (
            SELECT
                sh.bucket_start_utc,
                CASE WHEN coalesce(f.unknown_n, 0) = 0 THEN coalesce(f.spent_value_sat, 0) END AS spent_value_sat,
                CASE WHEN coalesce(f.unknown_n, 0) = 0 THEN coalesce(f.cdd_sat_sec, 0) END AS cdd_sat_sec,
                s.utxo_value_total_sat AS utxo_value_sat,
                s.cdd_cumulative_sat_sec AS cum_sat_sec,
                s.event_epoch::numeric * s.utxo_value_total_sat - s.utxo_value_x_created_epoch AS utxo_sat_sec
            FROM core.btc_period_state_heights($1, $2, $3) AS sh
            LEFT JOIN flows AS f ON sh.bucket_start_utc = f.period
            LEFT JOIN core.btc_block_coin_age AS s ON sh.state_height = s.height
        )

        SELECT
            r.bucket_start_utc,
            r.spent_value_sat,
            round(r.cdd_sat_sec / 8640000000000, 8) AS cdd,
            core.share(r.cdd_sat_sec / 86400, r.spent_value_sat) AS dormancy,
            round(r.cum_sat_sec / 8640000000000, 8) AS cdd_cumulative,
            CASE WHEN r.utxo_sat_sec IS NOT NULL THEN r.utxo_value_sat END AS utxo_value_sat,
            round(r.utxo_sat_sec / 8640000000000, 8) AS utxo_coin_days,
            core.share(r.cum_sat_sec, r.cum_sat_sec + r.utxo_sat_sec) AS liveliness
        FROM rows AS r
    $sql$, p_interval, p_from, p_to);
END
$$;
COMMENT ON FUNCTION core.metric_coin_days(text, timestamptz, timestamptz, text) IS 'Coin days destroyed, dormancy, cumulative CDD, UTXO coin days and liveliness per period.';

-- The UTXO set at the end of each UTC day split by creation day, kept as per-day snapshots so the daily split
-- metrics (supply_age_bands, holder_supply) cost per day the size of one day's split, not the whole history
-- (revision 0014; docs/benchmarks.md "Coin-age daily split"). core.btc_utxo_age_day, one row per day: the
-- state the day ends in (its last block at or before the day's end: state_height, state_hash,
-- state_value_x_created_epoch), known, and the split as one array: unspent_sat[i] = the value created on
-- day created_from_day + i - 1 (the first stored block's day on) still unspent at the end of the day, 0 for
-- a day without a block or all spent; NULL when not known. One array per day, not a row per (day, creation
-- day): ~6,200 x 6,200 pairs on mainnet, whose per-row header and index cost more than the values.
-- core.build_btc_utxo_age_days(p_from_day, p_to_day): (re)writes the days [p_from_day, p_to_day] and removes
-- the days after p_to_day (they were built on the days replaced; so the table holds what a clean build of
-- the same days holds):
--   base = the split of p_from_day - 1: the stored snapshot when its recorded state is still the chain's
--          (same last block, hash, utxo_value_x_created_epoch and first day: a reorg or re-ingest below
--          p_from_day changes one of them), else computed from the facts (every block's created value by
--          day minus every spend by creation day up to that day: one pass over the history, when no
--          snapshot is usable); the empty set when no block lies before p_from_day;
--   day T = base + the outputs created on the days p_from_day..T (their block's UTC day) - the outputs
--          spent on those days grouped by creation day (core.btc_block_spent_by_day): a running sum per
--          creation day over the range, set-based;
--   known = the state after T's last block is known from genesis with every creation time (as the metrics'
--          core.btc_block_coin_age); unknown days and days before the first block have no split.
-- Called by the two daily metric functions over their range before they read it (a reorg rewinds their
-- checkpoints, so a reorg touching day D rebuilds from D on). Idempotent: re-running a range writes the same
-- rows. Cost: the range's days x the days since the first block, plus the range's spends.
CREATE OR REPLACE FUNCTION core.build_btc_utxo_age_days(p_from_day date, p_to_day date)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
-- The grid (days x creation days) is sorted twice: in memory up to ~10^6 pairs. No JIT: the grid's row
-- estimate (every day x every creation day) makes it compile for seconds what runs in less.
SET work_mem = '128MB'
SET jit = off
AS $$
DECLARE
    v_from timestamptz := p_from_day::timestamp AT TIME ZONE 'UTC';
    v_to timestamptz := (p_to_day + 1)::timestamp AT TIME ZONE 'UTC';
    v_first_day date;
    v_base_height bigint;
    v_base_hash text;
    v_base_epoch numeric;
    v_snapshot boolean;
    v_rows bigint;
BEGIN
    IF p_from_day > p_to_day THEN
        RETURN 0;
    END IF;
    -- One writer at a time (both daily metrics call it; the lane runs them one after the other).
    PERFORM pg_advisory_xact_lock(hashtext('core.build_btc_utxo_age_days'));

    SELECT (pb.event_time AT TIME ZONE 'UTC')::date INTO v_first_day
    FROM core.btc_primitive_block AS pb
    ORDER BY pb.height
    LIMIT 1;

    -- The state the day before the range ends in: its last block.
    SELECT pb.height, pb.block_hash, f.utxo_value_x_created_epoch
    INTO v_base_height, v_base_hash, v_base_epoch
    FROM core.btc_primitive_block AS pb
    LEFT JOIN core.btc_block_utxo_facts AS f ON pb.height = f.height
    WHERE pb.bucket_start_utc < v_from
    ORDER BY pb.bucket_start_utc DESC, pb.height DESC
    LIMIT 1;

    CREATE TEMP TABLE IF NOT EXISTS pg_temp.utxo_age_base (
        created_day date PRIMARY KEY,
        unspent_sat bigint NOT NULL
    ) ON COMMIT DROP;
    TRUNCATE pg_temp.utxo_age_base;

    IF v_base_height IS NOT NULL AND v_base_epoch IS NOT NULL THEN
        SELECT EXISTS (
            SELECT 1 FROM core.btc_utxo_age_day AS d
            WHERE d.day = p_from_day - 1 AND d.known AND d.state_height = v_base_height
              AND d.state_hash = v_base_hash AND d.state_value_x_created_epoch = v_base_epoch
              AND d.created_from_day = v_first_day
        ) INTO v_snapshot;
        IF v_snapshot THEN
            INSERT INTO pg_temp.utxo_age_base
            SELECT d.created_from_day + (u.i - 1)::integer, u.unspent_sat
            FROM core.btc_utxo_age_day AS d
            CROSS JOIN LATERAL unnest(d.unspent_sat) WITH ORDINALITY AS u (unspent_sat, i)
            WHERE d.day = p_from_day - 1;
        ELSE
            INSERT INTO pg_temp.utxo_age_base
            SELECT m.created_day, sum(m.value_sat)::bigint
            FROM (
                SELECT b.day AS created_day, b.created_utxo_value_sat AS value_sat
                FROM core.btc_block_coin_age AS b
                WHERE b.bucket_start_utc < v_from
                UNION ALL
                SELECT s.created_day, -s.value_sat
                FROM core.btc_block_spent_by_day AS s
                INNER JOIN core.btc_primitive_block AS pb ON s.spend_height = pb.height
                WHERE pb.bucket_start_utc < v_from
            ) AS m
            GROUP BY m.created_day;
        END IF;
    END IF;

    DELETE FROM core.btc_utxo_age_day WHERE day >= p_from_day;

    INSERT INTO core.btc_utxo_age_day (
        day, state_height, state_hash, state_value_x_created_epoch, known, created_from_day, unspent_sat
    )
    WITH tops AS (
        SELECT b.day, max(b.height) AS top
        FROM core.btc_block_coin_age AS b
        WHERE b.bucket_start_utc >= v_from AND b.bucket_start_utc < v_to
        GROUP BY b.day
    ),

    -- Every day of the range with the state it ends in (heights rise with days: a running max).
    states AS (
        SELECT g.day::date AS day, coalesce(max(t.top) OVER (ORDER BY g.day), v_base_height) AS state_height
        FROM generate_series(p_from_day, p_to_day, INTERVAL '1 day') AS g (day)
        LEFT JOIN tops AS t ON g.day::date = t.day
    ),

    days AS (
        SELECT
            s.day,
            s.state_height,
            pb.block_hash,
            f.utxo_value_x_created_epoch,
            -- The base must be known too (it is when the state is: the state is known from genesis).
            coalesce(f.utxo_value_x_created_epoch IS NOT NULL, false)
            AND (v_base_height IS NULL OR v_base_epoch IS NOT NULL) AS known
        FROM states AS s
        LEFT JOIN core.btc_primitive_block AS pb ON s.state_height = pb.height
        LEFT JOIN core.btc_block_utxo_facts AS f ON s.state_height = f.height
    ),

    deltas AS (
        SELECT b.day, b.day AS created_day, b.created_utxo_value_sat AS value_sat
        FROM core.btc_block_coin_age AS b
        WHERE b.bucket_start_utc >= v_from AND b.bucket_start_utc < v_to
        UNION ALL
        SELECT b.day, s.created_day, -s.value_sat
        FROM core.btc_block_spent_by_day AS s
        INNER JOIN core.btc_block_coin_age AS b ON s.spend_height = b.height
        WHERE b.bucket_start_utc >= v_from AND b.bucket_start_utc < v_to
    ),

    per_day AS (
        SELECT d.day, d.created_day, sum(d.value_sat) AS value_sat
        FROM deltas AS d
        GROUP BY d.day, d.created_day
    ),

    -- Every calendar day from the first block's on, with its base (0 when none or created in the range).
    created_days AS (
        SELECT g.day::date AS created_day, coalesce(b.unspent_sat, 0) AS base_sat
        FROM generate_series(v_first_day, p_to_day, INTERVAL '1 day') AS g (day)
        LEFT JOIN pg_temp.utxo_age_base AS b ON g.day::date = b.created_day
    ),

    grid AS (
        SELECT
            d.day,
            c.created_day,
            c.base_sat + sum(coalesce(p.value_sat, 0)) OVER (
                PARTITION BY c.created_day ORDER BY d.day ROWS UNBOUNDED PRECEDING
            ) AS unspent_sat
        FROM days AS d
        INNER JOIN created_days AS c ON d.day >= c.created_day
        LEFT JOIN per_day AS p ON d.day = p.day AND c.created_day = p.created_day
        WHERE d.known
    ),

    splits AS (
        SELECT g.day, array_agg(g.unspent_sat::bigint ORDER BY g.created_day) AS unspent_sat
        FROM grid AS g
        GROUP BY g.day
    )

    SELECT
        d.day,
        d.state_height,
        d.block_hash,
        d.utxo_value_x_created_epoch,
        d.known,
        CASE WHEN d.known THEN v_first_day END,
        s.unspent_sat
    FROM days AS d
    LEFT JOIN splits AS s ON d.day = s.day;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION core.build_btc_utxo_age_days(date, date) IS 'Per-day snapshots of the UTXO set split by creation day for a day range, from the previous day''s snapshot and the range''s creations and spends (idempotent).';

-- core.btc_unspent_by_created_day(p_from_day, p_to_day): for every UTC day T of [p_from_day, p_to_day] built
-- by core.build_btc_utxo_age_days, the UTXO set at the end of T split by the UTC day its outputs were created
-- (every day from the first stored block's on; 0 where none is left): age_days = T - created_day (0 =
-- created on T); known false (one row, no split) where the state is unknown or no block lies at or before T.
-- The daily metrics below read it after building their range.
CREATE OR REPLACE FUNCTION core.btc_unspent_by_created_day(p_from_day date, p_to_day date)
RETURNS TABLE (day date, known boolean, created_day date, age_days integer, unspent_sat bigint)
LANGUAGE sql STABLE
AS $$
    SELECT
        d.day,
        d.known,
        d.created_from_day + (u.i - 1)::integer,
        (d.day - d.created_from_day - (u.i - 1))::integer,
        u.unspent_sat
    FROM core.btc_utxo_age_day AS d
    CROSS JOIN LATERAL unnest(d.unspent_sat) WITH ORDINALITY AS u (unspent_sat, i)
    WHERE d.day BETWEEN p_from_day AND p_to_day AND d.known
    UNION ALL
    SELECT d.day, false, NULL::date, NULL::integer, NULL::bigint
    FROM core.btc_utxo_age_day AS d
    WHERE d.day BETWEEN p_from_day AND p_to_day AND NOT d.known
$$;
COMMENT ON FUNCTION core.btc_unspent_by_created_day(date, date) IS 'The UTXO set at the end of each day split by creation day (what age bands, LTH/STH read), from the per-day snapshots.';

-- core.btc_age_band(p_age_days): the age band of a coin created age_days UTC days before the day it is
-- counted on (0: that day): <1d (0), 1d-1w (1-6), 1w-1m (7-29), 1-3m (30-89), 3-6m (90-179), 6-12m (180-364),
-- 1-2y (365-729), 2-3y (730-1094), 3-5y (1095-1824), 5-7y (1825-2554), 7-10y (2555-3649), >10y (3650-).
CREATE OR REPLACE FUNCTION core.btc_age_band(p_age_days integer)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_age_days < 1 THEN 'lt_1d'
        WHEN p_age_days < 7 THEN '1d_1w'
        WHEN p_age_days < 30 THEN '1w_1m'
        WHEN p_age_days < 90 THEN '1m_3m'
        WHEN p_age_days < 180 THEN '3m_6m'
        WHEN p_age_days < 365 THEN '6m_12m'
        WHEN p_age_days < 730 THEN '1y_2y'
        WHEN p_age_days < 1095 THEN '2y_3y'
        WHEN p_age_days < 1825 THEN '3y_5y'
        WHEN p_age_days < 2555 THEN '5y_7y'
        WHEN p_age_days < 3650 THEN '7y_10y'
        ELSE 'gt_10y'
    END
$$;

-- core.metric_supply_age_bands (24h only): the UTXO value at the end of each day by age band
-- (core.btc_age_band of the creation day); the bands sum to utxo_value_sat. NULL when the state is unknown.
-- Builds the range's per-day snapshots first (core.build_btc_utxo_age_days), then reads them.
CREATE OR REPLACE FUNCTION core.metric_supply_age_bands(
    p_interval text, p_from timestamptz, p_to timestamptz, p_output text
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF p_interval <> '24h' THEN
        RAISE EXCEPTION 'supply_age_bands is daily only (got %)', p_interval USING ERRCODE = '22023';
    END IF;
    PERFORM core.build_btc_utxo_age_days((p_from AT TIME ZONE 'UTC')::date, (p_to AT TIME ZONE 'UTC')::date);
    RETURN core.upsert_period_rows(p_output, $sql$
        WITH split AS (
            SELECT u.day, u.known, core.btc_age_band(u.age_days) AS band, u.unspent_sat
            FROM core.btc_unspent_by_created_day(($2 AT TIME ZONE 'UTC')::date, ($3 AT TIME ZONE 'UTC')::date) AS u
        ),

        bands AS (
            SELECT
                s.day,
                bool_and(s.known) AS known,
                sum(s.unspent_sat) AS total,
                sum(s.unspent_sat) FILTER (WHERE s.band = 'lt_1d') AS lt_1d,
                sum(s.unspent_sat) FILTER (WHERE s.band = '1d_1w') AS b_1d_1w,
                sum(s.unspent_sat) FILTER (WHERE s.band = '1w_1m') AS b_1w_1m,
                sum(s.unspent_sat) FILTER (WHERE s.band = '1m_3m') AS b_1m_3m,
                sum(s.unspent_sat) FILTER (WHERE s.band = '3m_6m') AS b_3m_6m,
                sum(s.unspent_sat) FILTER (WHERE s.band = '6m_12m') AS b_6m_12m,
                sum(s.unspent_sat) FILTER (WHERE s.band = '1y_2y') AS b_1y_2y,
                sum(s.unspent_sat) FILTER (WHERE s.band = '2y_3y') AS b_2y_3y,
                sum(s.unspent_sat) FILTER (WHERE s.band = '3y_5y') AS b_3y_5y,
                sum(s.unspent_sat) FILTER (WHERE s.band = '5y_7y') AS b_5y_7y,
                sum(s.unspent_sat) FILTER (WHERE s.band = '7y_10y') AS b_7y_10y,
                sum(s.unspent_sat) FILTER (WHERE s.band = 'gt_10y') AS gt_10y
            FROM split AS s
            GROUP BY s.day
        )

        SELECT
            p.bucket_start_utc,
            CASE WHEN b.known THEN coalesce(b.total, 0) END AS utxo_value_sat,
            CASE WHEN b.known THEN coalesce(b.lt_1d, 0) END AS supply_lt_1d_sat,
            CASE WHEN b.known THEN coalesce(b.b_1d_1w, 0) END AS supply_1d_1w_sat,
            CASE WHEN b.known THEN coalesce(b.b_1w_1m, 0) END AS supply_1w_1m_sat,
            CASE WHEN b.known THEN coalesce(b.b_1m_3m, 0) END AS supply_1m_3m_sat,
            CASE WHEN b.known THEN coalesce(b.b_3m_6m, 0) END AS supply_3m_6m_sat,
            CASE WHEN b.known THEN coalesce(b.b_6m_12m, 0) END AS supply_6m_12m_sat,
            CASE WHEN b.known THEN coalesce(b.b_1y_2y, 0) END AS supply_1y_2y_sat,
            CASE WHEN b.known THEN coalesce(b.b_2y_3y, 0) END AS supply_2y_3y_sat,
            CASE WHEN b.known THEN coalesce(b.b_3y_5y, 0) END AS supply_3y_5y_sat,
            CASE WHEN b.known THEN coalesce(b.b_5y_7y, 0) END AS supply_5y_7y_sat,
            CASE WHEN b.known THEN coalesce(b.b_7y_10y, 0) END AS supply_7y_10y_sat,
            CASE WHEN b.known THEN coalesce(b.gt_10y, 0) END AS supply_gt_10y_sat
        FROM core.btc_primitive_periods AS p
        LEFT JOIN bands AS b ON (p.bucket_start_utc AT TIME ZONE 'UTC')::date = b.day
        WHERE p."interval" = '24h' AND p.bucket_start_utc BETWEEN $2 AND $3
    $sql$, p_interval, p_from, p_to);
END
$$;
COMMENT ON FUNCTION core.metric_supply_age_bands(text, timestamptz, timestamptz, text) IS 'HODL waves: UTXO value at the end of each day by age band.';

-- core.metric_holder_supply (24h only): at the end of each day, short-term holder supply (coins created
-- fewer than 155 days before: age_days < 155) and long-term (age_days >= 155), the realized cap of each
-- (value x creation-day close), and supply in profit / in loss: coins whose creation-day close is below /
-- above the day's close (equal: neither). NULL when the state is unknown; USD and profit/loss NULL when a
-- needed close is missing. Builds the range's per-day snapshots first (core.build_btc_utxo_age_days); the
-- closes are joined when read, so a revised close needs no rebuild of the snapshots.
CREATE OR REPLACE FUNCTION core.metric_holder_supply(
    p_interval text, p_from timestamptz, p_to timestamptz, p_output text
)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF p_interval <> '24h' THEN
        RAISE EXCEPTION 'holder_supply is daily only (got %)', p_interval USING ERRCODE = '22023';
    END IF;
    PERFORM core.build_btc_utxo_age_days((p_from AT TIME ZONE 'UTC')::date, (p_to AT TIME ZONE 'UTC')::date);
    RETURN core.upsert_period_rows(p_output, $sql$
        WITH split AS (
            SELECT u.day, u.known, u.age_days, u.unspent_sat, c.close_price_usd AS created_close
            FROM core.btc_unspent_by_created_day(($2 AT TIME ZONE 'UTC')::date, ($3 AT TIME ZONE 'UTC')::date) AS u
            LEFT JOIN core.btc_daily_close AS c ON u.created_day = c.day
        ),

        per_day AS (
            SELECT
                s.day,
                bool_and(s.known) AS known,
                coalesce(sum(s.unspent_sat), 0) AS total,
                coalesce(sum(s.unspent_sat) FILTER (WHERE s.age_days < 155), 0) AS sth,
                coalesce(sum(s.unspent_sat) FILTER (WHERE s.age_days >= 155), 0) AS lth,
                count(*) FILTER (WHERE s.unspent_sat <> 0 AND s.created_close IS NULL AND s.age_days < 155) AS sth_unpriced,
                count(*) FILTER (WHERE s.unspent_sat <> 0 AND s.created_close IS NULL AND s.age_days >= 155) AS lth_unpriced,
                coalesce(sum(s.unspent_sat * s.created_close / 100000000) FILTER (WHERE s.age_days < 155), 0) AS sth_usd,
                coalesce(sum(s.unspent_sat * s.created_close / 100000000) FILTER (WHERE s.age_days >= 155), 0)
                    AS lth_usd,
                array_agg(s.created_close) FILTER (WHERE s.unspent_sat <> 0) AS closes,
                array_agg(s.unspent_sat) FILTER (WHERE s.unspent_sat <> 0) AS amounts
            FROM split AS s
            GROUP BY s.day
        )

        SELECT
            p.bucket_start_utc,
            CASE WHEN d.known THEN d.total END AS utxo_value_sat,
            CASE WHEN d.known THEN d.sth END AS sth_supply_sat,
            CASE WHEN d.known THEN d.lth END AS lth_supply_sat,
            p.close_price_usd,
            CASE WHEN d.known AND d.sth_unpriced = 0 THEN round(d.sth_usd, 8) END AS sth_realized_cap_usd,
            CASE WHEN d.known AND d.lth_unpriced = 0 THEN round(d.lth_usd, 8) END AS lth_realized_cap_usd,
            CASE WHEN d.known AND p.close_price_usd IS NOT NULL AND d.sth_unpriced + d.lth_unpriced = 0 THEN (
                SELECT coalesce(sum(a.amount), 0)
                FROM unnest(d.closes, d.amounts) AS a (close, amount)
                WHERE a.close < p.close_price_usd
            ) END AS supply_in_profit_sat,
            CASE WHEN d.known AND p.close_price_usd IS NOT NULL AND d.sth_unpriced + d.lth_unpriced = 0 THEN (
                SELECT coalesce(sum(a.amount), 0)
                FROM unnest(d.closes, d.amounts) AS a (close, amount)
                WHERE a.close > p.close_price_usd
            ) END AS supply_in_loss_sat
        FROM core.btc_priced_periods AS p
        LEFT JOIN per_day AS d ON (p.bucket_start_utc AT TIME ZONE 'UTC')::date = d.day
        WHERE p."interval" = '24h' AND p.bucket_start_utc BETWEEN $2 AND $3
    $sql$, p_interval, p_from, p_to);
END
$$;
COMMENT ON FUNCTION core.metric_holder_supply(text, timestamptz, timestamptz, text) IS 'Long/short-term holder supply (155 days) and realized caps, supply in profit/loss, per day.';

-- core.seed_coin_age_metric_registry(p_reset): the coin-age metrics in core.metric_registry (called by
-- core.seed_metric_registry): realized_cap, sopr, coin_days_destroyed at 10m/1h/24h; supply_age_bands and
-- holder_supply daily. Dependencies: the interval's backbone and, for the USD ones, its price (the daily
-- close of core.btc_daily_close needs no more). Keeps edits; p_reset as core.seed_metric_registry.
CREATE OR REPLACE FUNCTION core.seed_coin_age_metric_registry(p_reset text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_rows integer;
BEGIN
    WITH metrics (metric_name, sql_function, stem, intervals, needs_price, description) AS (
        VALUES
        ('realized_cap', 'core.metric_realized_cap', 'realized_cap', ARRAY['10m', '1h', '24h'], true,
         'realized cap (coins at the close of their creation day), realized price, MVRV, NUPL'),
        ('sopr', 'core.metric_sopr', 'sopr', ARRAY['10m', '1h', '24h'], true,
         'SOPR, adjusted SOPR (spends younger than 1 hour left out), realized profit and loss in USD'),
        ('coin_days_destroyed', 'core.metric_coin_days', 'coin_days', ARRAY['10m', '1h', '24h'], false,
         'coin days destroyed, dormancy, cumulative CDD, UTXO coin days, liveliness'),
        ('supply_age_bands', 'core.metric_supply_age_bands', 'supply_age_bands', ARRAY['24h'], false,
         'UTXO value at the end of each day by age band (HODL waves)'),
        ('holder_supply', 'core.metric_holder_supply', 'holder_supply', ARRAY['24h'], true,
         'short/long-term holder supply (155 days) and realized caps, supply in profit / loss')
    ),

    intervals ("interval", primitive_checkpoint, price_checkpoint) AS (
        SELECT d."interval", d.primitive_checkpoint, d.price_checkpoint
        FROM core.metric_interval_dependencies() AS d
    ),

    defaults AS (
        SELECT
            m.metric_name,
            i."interval",
            m.sql_function,
            format('btc_%s_%s', m.stem, i."interval") AS output_table,
            m.description,
            ARRAY[i.primitive_checkpoint]
            || CASE WHEN m.needs_price THEN ARRAY[i.price_checkpoint] ELSE '{}' END AS dependencies
        FROM metrics AS m
        INNER JOIN intervals AS i ON i."interval" = ANY(m.intervals)
    )

    INSERT INTO core.metric_registry AS r (
        metric_name, factor, "interval", sql_function, output_table, dependencies, description
    )
    SELECT d.metric_name, 'coin_age', d."interval", d.sql_function, d.output_table, d.dependencies, d.description
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
    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION core.seed_coin_age_metric_registry(text) IS 'Seed the coin-age metrics into core.metric_registry (missing rows; p_reset restores defaults).';
