-- core.build_primitive_10m(p_target, p_max_buckets)
-- Builds the continuous 10-minute backbone core.btc_primitive_10m, set-based, in one statement:
--   start  = the first bucket that can have changed since the checkpoint btc_primitive_10m_builder:10m
--            (last_height = last block included, last_bucket_time = last bucket written): the bucket of
--            the first block above last_height, else last_bucket_time + 10m; the first block's bucket on
--            the first run. core.mark_primitive_10m_dirty rewinds the checkpoint when stored blocks change.
--   target = the latest of: bucket of p_target (e.g. now(), to advance an idle timeline), bucket of the
--            highest contiguous block (raw checkpoint), and the last stored 10m row; capped at
--            start + p_max_buckets - 1 when given (large ranges in chunks, each call continuing).
-- Every bucket in [start, target] is written (UPSERT): flow fields summed (0 when empty), state fields
-- carried forward from the last block at or before the bucket, undefined statistics NULL, exact medians
-- from raw.btc_tx_raw, price fields from core.mq_btc_price_10m (NULL when none).
-- The checkpoint moves in the same transaction; NOTIFY primitive_ready is delivered on commit.
-- Returns the range written (nothing when no block is stored). Re-running yields identical rows.
CREATE OR REPLACE FUNCTION core.build_primitive_10m(
    p_target timestamptz DEFAULT NULL,
    p_max_buckets integer DEFAULT NULL
)
RETURNS TABLE (from_bucket timestamptz, to_bucket timestamptz, bucket_count integer, last_height bigint)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_cp record;
    v_raw_height bigint;
    v_start timestamptz;
    v_target timestamptz;
    v_top_height bigint;
    v_seed_height bigint;
    v_rows integer;
BEGIN
    SELECT c.last_height INTO v_raw_height
    FROM core.sync_checkpoints AS c
    WHERE c.chain = 'btc' AND c.component = 'btc_raw_block_ingestion' AND c."interval" = 'block';
    IF v_raw_height IS NULL THEN
        RETURN;
    END IF;

    SELECT c.last_height, c.last_bucket_time INTO v_cp
    FROM core.sync_checkpoints AS c
    WHERE c.chain = 'btc' AND c.component = 'btc_primitive_10m_builder' AND c."interval" = '10m'
    FOR UPDATE;

    -- Rewrite from the first bucket that can have changed: the bucket of the first block above the
    -- checkpoint height (median time never decreases, so no later block lands earlier), or the bucket
    -- after the last one written when no new block is there.
    IF v_cp.last_height IS NULL THEN
        SELECT min(pb.bucket_start_utc) INTO v_start
        FROM core.btc_primitive_block AS pb WHERE pb.height <= v_raw_height;
    ELSE
        SELECT least(
            (SELECT pb.bucket_start_utc FROM core.btc_primitive_block AS pb
             WHERE pb.height > v_cp.last_height AND pb.height <= v_raw_height
             ORDER BY pb.height LIMIT 1),
            v_cp.last_bucket_time + INTERVAL '10 minutes'
        ) INTO v_start;
    END IF;
    IF v_start IS NULL THEN
        RETURN;
    END IF;

    -- Through the latest of: the requested bucket (now() advances an idle timeline), the bucket of the
    -- highest contiguous block, and the end of the timeline already stored (rows there are rewritten).
    SELECT greatest(
        core.bucket_10m(p_target),
        (SELECT pb.bucket_start_utc FROM core.btc_primitive_block AS pb
         WHERE pb.height <= v_raw_height ORDER BY pb.height DESC LIMIT 1),
        (SELECT max(p.bucket_start_utc) FROM core.btc_primitive_10m AS p)
    ) INTO v_target;
    IF p_max_buckets IS NOT NULL THEN
        v_target := least(v_target, v_start + (p_max_buckets - 1) * INTERVAL '10 minutes');
    END IF;
    IF v_target < v_start THEN
        RETURN;
    END IF;

    SELECT max(pb.height) INTO v_top_height
    FROM core.btc_primitive_block AS pb
    WHERE pb.height <= v_raw_height AND pb.bucket_start_utc <= v_target;

    SELECT max(pb.height) INTO v_seed_height
    FROM core.btc_primitive_block AS pb
    WHERE pb.height <= v_raw_height AND pb.bucket_start_utc < v_start;

    INSERT INTO core.btc_primitive_10m AS p (
        bucket_start_utc, block_count, issued_sat_10m, fees_sat_10m, total_fee_sat_10m, miner_revenue_sat_10m,
        total_out_sat_10m, transferred_sat_10m, transferred_btc_10m, tx_count_10m, non_coinbase_tx_count_10m,
        input_count_10m, output_count_10m, segwit_tx_count_10m, block_size_total_bytes_10m,
        block_weight_total_wu_10m, block_vsize_total_vb_10m, tx_size_total_bytes_10m, tx_vsize_total_vb_10m,
        sw_total_size_bytes_10m, sw_total_weight_wu_10m, utxo_increase_10m, created_output_count_10m,
        spent_output_count_10m, tx_rate_per_sec_10m, fee_observed_tx_count_10m, fee_observed_sat_10m,
        fee_observed_vsize_vb_10m, block_interval_count_10m, block_interval_sum_sec_10m,
        supply_total_sat, difficulty_last, chainwork_last, best_block_height_last, halving_epoch,
        block_interval_mean_sec_10m, block_interval_median_sec_10m, avg_fee_sat_10m, median_fee_sat_10m,
        avg_feerate_sat_vb_10m, min_feerate_sat_vb_10m, max_feerate_sat_vb_10m, segwit_share_10m,
        tx_size_mean_bytes_10m, block_size_mean_bytes_10m, block_weight_mean_wu_10m, block_reward_sat_avg,
        open_price_usd, high_price_usd, low_price_usd, close_price_usd, market_cap_usd
    )
    WITH blocks AS (
        SELECT pb.*
        FROM core.btc_primitive_block AS pb
        WHERE pb.height <= v_top_height
          AND pb.bucket_start_utc BETWEEN v_start AND v_target
    ),

    -- Flows count mined blocks. The genesis block is state only (height 0, supply 0): its coinbase is
    -- unspendable and no node validates it, and Coin Metrics counts it in no daily flow either
    -- (BlkCnt, BlkSizeByte and IssTotNtv are 0 on 2009-01-03).
    flow_blocks AS (
        SELECT b.*
        FROM blocks AS b
        WHERE b.height > 0
    ),

    state_agg AS (
        SELECT
            b.bucket_start_utc,
            max(b.height) AS top_height
        FROM blocks AS b
        GROUP BY b.bucket_start_utc
    ),

    block_agg AS (
        SELECT
            b.bucket_start_utc,
            count(*)::integer AS block_count,
            sum(b.issued_sat)::bigint AS issued_sat,
            sum(b.total_fee_sat)::bigint AS fee_sat,
            sum(b.miner_revenue_sat)::bigint AS miner_revenue_sat,
            sum(b.total_out_sat)::bigint AS total_out_sat,
            sum(b.total_out_sat - b.coinbase_out_sat)::bigint AS transferred_sat,
            sum(b.tx_count)::bigint AS tx_count,
            sum(b.non_coinbase_tx_count)::bigint AS non_coinbase_tx_count,
            sum(b.input_count)::bigint AS input_count,
            sum(b.output_count)::bigint AS output_count,
            sum(b.segwit_tx_count)::bigint AS segwit_tx_count,
            sum(b.block_size_bytes)::bigint AS block_size_bytes,
            sum(b.block_weight_wu)::bigint AS block_weight_wu,
            sum(b.block_vsize_vb)::bigint AS block_vsize_vb,
            sum(b.tx_size_total_bytes)::bigint AS tx_size_bytes,
            sum(b.tx_vsize_total_vb)::bigint AS tx_vsize_vb,
            sum(b.sw_total_size_bytes)::bigint AS sw_size_bytes,
            sum(b.sw_total_weight_wu)::bigint AS sw_weight_wu
        FROM flow_blocks AS b
        GROUP BY b.bucket_start_utc
    ),

    -- Intervals between consecutive blocks of the same bucket, by header time.
    intervals AS (
        SELECT
            b.bucket_start_utc,
            (extract(EPOCH FROM b.block_time)
             - extract(EPOCH FROM lag(b.block_time) OVER (PARTITION BY b.bucket_start_utc ORDER BY b.height)))::bigint
                AS interval_sec
        FROM flow_blocks AS b
    ),

    interval_agg AS (
        SELECT
            i.bucket_start_utc,
            count(*)::integer AS n,
            sum(i.interval_sec)::bigint AS total_sec,
            -- Exact median: mean of the lower and upper middle values (equal when the count is odd).
            round((percentile_disc(0.5) WITHIN GROUP (ORDER BY i.interval_sec)
                   + percentile_disc(0.5) WITHIN GROUP (ORDER BY i.interval_sec DESC))::numeric / 2, 8) AS median_sec
        FROM intervals AS i
        WHERE i.interval_sec IS NOT NULL
        GROUP BY i.bucket_start_utc
    ),

    -- Fee observations: non-coinbase transactions whose fee the node reported.
    fee_obs AS (
        SELECT
            b.bucket_start_utc,
            t.fee_sat,
            coalesce(t.vsize, ceil(coalesce(t.weight, 4 * t.size) / 4.0))::bigint AS vsize_vb
        FROM flow_blocks AS b
        INNER JOIN raw.btc_tx_raw AS t ON b.height = t.height
        WHERE NOT t.is_coinbase AND t.fee_sat IS NOT NULL
    ),

    fee_agg AS (
        SELECT
            f.bucket_start_utc,
            count(*)::bigint AS n,
            sum(f.fee_sat)::bigint AS fee_sat,
            sum(f.vsize_vb)::bigint AS vsize_vb,
            round((percentile_disc(0.5) WITHIN GROUP (ORDER BY f.fee_sat)
                   + percentile_disc(0.5) WITHIN GROUP (ORDER BY f.fee_sat DESC))::numeric / 2, 8) AS median_fee_sat,
            min(round(f.fee_sat::numeric / nullif(f.vsize_vb, 0), 8)) AS min_feerate,
            max(round(f.fee_sat::numeric / nullif(f.vsize_vb, 0), 8)) AS max_feerate
        FROM fee_obs AS f
        GROUP BY f.bucket_start_utc
    ),

    timeline AS (
        SELECT
            g.bucket_start_utc,
            a.block_count,
            a.issued_sat,
            a.fee_sat,
            a.miner_revenue_sat,
            a.total_out_sat,
            a.transferred_sat,
            a.tx_count,
            a.non_coinbase_tx_count,
            a.input_count,
            a.output_count,
            a.segwit_tx_count,
            a.block_size_bytes,
            a.block_weight_wu,
            a.block_vsize_vb,
            a.tx_size_bytes,
            a.tx_vsize_vb,
            a.sw_size_bytes,
            a.sw_weight_wu,
            -- Heights rise with buckets, so the running max is the last block at or before the bucket.
            coalesce(max(st.top_height) OVER (ORDER BY g.bucket_start_utc), v_seed_height) AS state_height
        FROM generate_series(v_start, v_target, INTERVAL '10 minutes') AS g (bucket_start_utc)
        LEFT JOIN block_agg AS a ON g.bucket_start_utc = a.bucket_start_utc
        LEFT JOIN state_agg AS st ON g.bucket_start_utc = st.bucket_start_utc
    ),

    flows AS (
        SELECT
            tl.bucket_start_utc,
            tl.state_height,
            coalesce(tl.block_count, 0) AS block_count,
            coalesce(tl.issued_sat, 0) AS issued_sat,
            coalesce(tl.fee_sat, 0) AS fee_sat,
            coalesce(tl.miner_revenue_sat, 0) AS miner_revenue_sat,
            coalesce(tl.total_out_sat, 0) AS total_out_sat,
            coalesce(tl.transferred_sat, 0) AS transferred_sat,
            coalesce(tl.tx_count, 0) AS tx_count,
            coalesce(tl.non_coinbase_tx_count, 0) AS non_coinbase_tx_count,
            coalesce(tl.input_count, 0) AS input_count,
            coalesce(tl.output_count, 0) AS output_count,
            coalesce(tl.segwit_tx_count, 0) AS segwit_tx_count,
            coalesce(tl.block_size_bytes, 0) AS block_size_bytes,
            coalesce(tl.block_weight_wu, 0) AS block_weight_wu,
            coalesce(tl.block_vsize_vb, 0) AS block_vsize_vb,
            coalesce(tl.tx_size_bytes, 0) AS tx_size_bytes,
            coalesce(tl.tx_vsize_vb, 0) AS tx_vsize_vb,
            coalesce(tl.sw_size_bytes, 0) AS sw_size_bytes,
            coalesce(tl.sw_weight_wu, 0) AS sw_weight_wu,
            coalesce(fa.n, 0) AS fee_obs_n,
            coalesce(fa.fee_sat, 0) AS fee_obs_sat,
            coalesce(fa.vsize_vb, 0) AS fee_obs_vsize_vb,
            fa.median_fee_sat,
            fa.min_feerate,
            fa.max_feerate,
            coalesce(ia.n, 0) AS interval_n,
            coalesce(ia.total_sec, 0) AS interval_total_sec,
            ia.median_sec
        FROM timeline AS tl
        LEFT JOIN fee_agg AS fa ON tl.bucket_start_utc = fa.bucket_start_utc
        LEFT JOIN interval_agg AS ia ON tl.bucket_start_utc = ia.bucket_start_utc
    )

    SELECT
        f.bucket_start_utc,
        f.block_count,
        f.issued_sat,
        f.fee_sat,
        f.fee_sat,
        f.miner_revenue_sat,
        f.total_out_sat,
        f.transferred_sat,
        round(f.transferred_sat::numeric / 100000000, 8),
        f.tx_count,
        f.non_coinbase_tx_count,
        f.input_count,
        f.output_count,
        f.segwit_tx_count,
        f.block_size_bytes,
        f.block_weight_wu,
        f.block_vsize_vb,
        f.tx_size_bytes,
        f.tx_vsize_vb,
        f.sw_size_bytes,
        f.sw_weight_wu,
        f.output_count - f.input_count,
        f.output_count,
        f.input_count,
        round(f.tx_count::numeric / 600, 8),
        f.fee_obs_n,
        f.fee_obs_sat,
        f.fee_obs_vsize_vb,
        f.interval_n,
        f.interval_total_sec,
        s.cumulative_supply_sat,
        s.difficulty,
        s.chainwork,
        s.height,
        core.btc_halving_epoch(s.height),
        CASE WHEN f.interval_n > 0 THEN round(f.interval_total_sec::numeric / f.interval_n, 8) END,
        f.median_sec,
        CASE WHEN f.non_coinbase_tx_count > 0 THEN round(f.fee_sat::numeric / f.non_coinbase_tx_count, 8) END,
        f.median_fee_sat,
        CASE WHEN f.fee_obs_vsize_vb > 0 THEN round(f.fee_obs_sat::numeric / f.fee_obs_vsize_vb, 8) END,
        f.min_feerate,
        f.max_feerate,
        CASE WHEN f.non_coinbase_tx_count > 0 THEN round(f.segwit_tx_count::numeric / f.non_coinbase_tx_count, 8) END,
        CASE WHEN f.tx_count > 0 THEN round(f.tx_size_bytes::numeric / f.tx_count, 8) END,
        CASE WHEN f.block_count > 0 THEN round(f.block_size_bytes::numeric / f.block_count, 8) END,
        CASE WHEN f.block_count > 0 THEN round(f.block_weight_wu::numeric / f.block_count, 8) END,
        CASE WHEN f.block_count > 0 THEN round(f.miner_revenue_sat::numeric / f.block_count, 8) END,
        pr.open_price_usd,
        pr.high_price_usd,
        pr.low_price_usd,
        pr.close_price_usd,
        core.sat_to_usd(s.cumulative_supply_sat, pr.close_price_usd)
    FROM flows AS f
    LEFT JOIN core.btc_primitive_block AS s ON f.state_height = s.height
    LEFT JOIN core.mq_btc_price_10m AS pr ON f.bucket_start_utc = pr.bucket_start_utc
    ON CONFLICT (bucket_start_utc) DO UPDATE
    SET block_count = excluded.block_count,
        issued_sat_10m = excluded.issued_sat_10m,
        fees_sat_10m = excluded.fees_sat_10m,
        total_fee_sat_10m = excluded.total_fee_sat_10m,
        miner_revenue_sat_10m = excluded.miner_revenue_sat_10m,
        total_out_sat_10m = excluded.total_out_sat_10m,
        transferred_sat_10m = excluded.transferred_sat_10m,
        transferred_btc_10m = excluded.transferred_btc_10m,
        tx_count_10m = excluded.tx_count_10m,
        non_coinbase_tx_count_10m = excluded.non_coinbase_tx_count_10m,
        input_count_10m = excluded.input_count_10m,
        output_count_10m = excluded.output_count_10m,
        segwit_tx_count_10m = excluded.segwit_tx_count_10m,
        block_size_total_bytes_10m = excluded.block_size_total_bytes_10m,
        block_weight_total_wu_10m = excluded.block_weight_total_wu_10m,
        block_vsize_total_vb_10m = excluded.block_vsize_total_vb_10m,
        tx_size_total_bytes_10m = excluded.tx_size_total_bytes_10m,
        tx_vsize_total_vb_10m = excluded.tx_vsize_total_vb_10m,
        sw_total_size_bytes_10m = excluded.sw_total_size_bytes_10m,
        sw_total_weight_wu_10m = excluded.sw_total_weight_wu_10m,
        utxo_increase_10m = excluded.utxo_increase_10m,
        created_output_count_10m = excluded.created_output_count_10m,
        spent_output_count_10m = excluded.spent_output_count_10m,
        tx_rate_per_sec_10m = excluded.tx_rate_per_sec_10m,
        fee_observed_tx_count_10m = excluded.fee_observed_tx_count_10m,
        fee_observed_sat_10m = excluded.fee_observed_sat_10m,
        fee_observed_vsize_vb_10m = excluded.fee_observed_vsize_vb_10m,
        block_interval_count_10m = excluded.block_interval_count_10m,
        block_interval_sum_sec_10m = excluded.block_interval_sum_sec_10m,
        supply_total_sat = excluded.supply_total_sat,
        difficulty_last = excluded.difficulty_last,
        chainwork_last = excluded.chainwork_last,
        best_block_height_last = excluded.best_block_height_last,
        halving_epoch = excluded.halving_epoch,
        block_interval_mean_sec_10m = excluded.block_interval_mean_sec_10m,
        block_interval_median_sec_10m = excluded.block_interval_median_sec_10m,
        avg_fee_sat_10m = excluded.avg_fee_sat_10m,
        median_fee_sat_10m = excluded.median_fee_sat_10m,
        avg_feerate_sat_vb_10m = excluded.avg_feerate_sat_vb_10m,
        min_feerate_sat_vb_10m = excluded.min_feerate_sat_vb_10m,
        max_feerate_sat_vb_10m = excluded.max_feerate_sat_vb_10m,
        segwit_share_10m = excluded.segwit_share_10m,
        tx_size_mean_bytes_10m = excluded.tx_size_mean_bytes_10m,
        block_size_mean_bytes_10m = excluded.block_size_mean_bytes_10m,
        block_weight_mean_wu_10m = excluded.block_weight_mean_wu_10m,
        block_reward_sat_avg = excluded.block_reward_sat_avg,
        open_price_usd = excluded.open_price_usd,
        high_price_usd = excluded.high_price_usd,
        low_price_usd = excluded.low_price_usd,
        close_price_usd = excluded.close_price_usd,
        market_cap_usd = excluded.market_cap_usd;
    GET DIAGNOSTICS v_rows = ROW_COUNT;

    PERFORM core.set_checkpoint('btc', 'btc_primitive_10m_builder', '10m', v_top_height, v_target, 'ok');
    -- Rollups and metrics redo every period from v_start on.
    PERFORM core.rewind_checkpoints(ARRAY['rollup\_%', 'btc\_metric\_%'], v_start);
    PERFORM pg_notify('primitive_ready', json_build_object(
        'from_bucket', v_start, 'to_bucket', v_target, 'last_height', v_top_height)::text);

    from_bucket := v_start;
    to_bucket := v_target;
    bucket_count := v_rows;
    last_height := v_top_height;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION core.build_primitive_10m(timestamptz, integer) IS 'Build the continuous 10m backbone from its checkpoint through a target bucket in one set-based UPSERT.';
COMMENT ON TABLE core.btc_primitive_10m IS 'Continuous 10-minute on-chain backbone: flows (0 when empty), carried-forward state, NULL where undefined.';

-- core.mark_primitive_10m_dirty(p_height): stored blocks from p_height up changed (re-ingested or
-- orphaned). Rewinds the builder checkpoint to the block below so the next build rewrites every bucket
-- from that block's bucket on. No-op when the builder has not reached p_height.
CREATE OR REPLACE FUNCTION core.mark_primitive_10m_dirty(p_height bigint)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    UPDATE core.sync_checkpoints AS c
    SET last_height = p_height - 1,
        last_bucket_time = (
            SELECT pb.bucket_start_utc - INTERVAL '10 minutes'
            FROM core.btc_primitive_block AS pb WHERE pb.height = p_height - 1
        ),
        updated_at = clock_timestamp()
    WHERE c.chain = 'btc' AND c.component = 'btc_primitive_10m_builder' AND c."interval" = '10m'
      AND c.last_height >= p_height
$$;
