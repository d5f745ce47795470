-- The 10-minute backbone core.btc_primitive_10m, in six parts:
--   window      core.btc_primitive_10m_window: which buckets a build rewrites, from the checkpoints
--   flows       core.btc_primitive_10m_flows: per bucket, sums of the blocks' facts
--   statistics  core.btc_primitive_10m_statistics: per bucket, block intervals and fee statistics
--   state       core.btc_primitive_10m_state: every bucket with the state after its last block (carried)
--   rows        core.btc_primitive_10m_rows: every bucket of the window with state, flows and statistics
--               (NULL when undefined), one column per table column
--   write       core.build_primitive_10m: the UPSERT of those rows, the price fields, the checkpoint and
--               the NOTIFY
-- and two separate sections: "Block span and hash rate estimates" (core.btc_primitive_10m_block_span:
-- first/last height and block time, hash rate estimates; the seed's backbone columns, revision 0009), before
-- the rows part that reads it (a function's body is checked when it is created), and at the end of the file
-- "Price fields" (core.set_primitive_10m_prices, the one writer of the backbone's price columns, called by
-- the builder and the composer).
-- Nothing here reads raw.btc_tx_raw: fee observations come from core.btc_block_fee_facts (written once
-- per block at ingest, sql/functions/020_btc_primitive_block.sql).

-- core.btc_primitive_10m_window(p_raw_height, p_last_height, p_last_bucket, p_target, p_max_buckets)
--   start  = the first bucket that can have changed since the builder's checkpoint (p_last_height = last
--            block included, p_last_bucket = last bucket written): the bucket of the first block above
--            p_last_height, else p_last_bucket + 10m; the first block's bucket on the first run (NULL
--            p_last_height). Median time past never decreases with height, so no later block lands earlier.
--   target = the latest of: bucket of p_target (e.g. now(), to advance an idle timeline), bucket of the
--            highest contiguous block (p_raw_height, the raw checkpoint), and the last stored 10m row (rows
--            there are rewritten); capped at start + p_max_buckets - 1 when given.
--   top_height  = the last block (<= p_raw_height) whose bucket is <= target: the new checkpoint height.
--   seed_height = the last block before start: the state carried into the first bucket.
-- No row when there is nothing to build. Reads core.btc_primitive_block and the stored 10m timeline end.
CREATE OR REPLACE FUNCTION core.btc_primitive_10m_window(
    p_raw_height bigint,
    p_last_height bigint,
    p_last_bucket timestamptz,
    p_target timestamptz,
    p_max_buckets integer
)
RETURNS TABLE (start_bucket timestamptz, target_bucket timestamptz, top_height bigint, seed_height bigint)
LANGUAGE sql STABLE
AS $$
    WITH start_point AS (
        SELECT CASE
            WHEN p_last_height IS NULL THEN (
                SELECT min(pb.bucket_start_utc) FROM core.btc_primitive_block AS pb WHERE pb.height <= p_raw_height
            )
            ELSE least(
                (SELECT pb.bucket_start_utc FROM core.btc_primitive_block AS pb
                 WHERE pb.height > p_last_height AND pb.height <= p_raw_height
                 ORDER BY pb.height LIMIT 1),
                p_last_bucket + INTERVAL '10 minutes'
            )
        END AS start_bucket
    ),

    end_point AS (
        SELECT
            sp.start_bucket,
            least(
                greatest(
                    core.bucket_10m(p_target),
                    (SELECT pb.bucket_start_utc FROM core.btc_primitive_block AS pb
                     WHERE pb.height <= p_raw_height ORDER BY pb.height DESC LIMIT 1),
                    (SELECT max(p.bucket_start_utc) FROM core.btc_primitive_10m AS p)
                ),
                sp.start_bucket + (p_max_buckets - 1) * INTERVAL '10 minutes'
            ) AS target_bucket
        FROM start_point AS sp
        WHERE sp.start_bucket IS NOT NULL
    )

    SELECT
        e.start_bucket,
        e.target_bucket,
        (SELECT max(pb.height) FROM core.btc_primitive_block AS pb
         WHERE pb.height <= p_raw_height AND pb.bucket_start_utc <= e.target_bucket) AS top_height,
        (SELECT max(pb.height) FROM core.btc_primitive_block AS pb
         WHERE pb.height <= p_raw_height AND pb.bucket_start_utc < e.start_bucket) AS seed_height
    FROM end_point AS e
    WHERE e.target_bucket >= e.start_bucket
$$;
COMMENT ON FUNCTION core.btc_primitive_10m_window(bigint, bigint, timestamptz, timestamptz, integer) IS 'The buckets a 10m build rewrites, its new checkpoint height and the block whose state seeds it.';

-- core.btc_primitive_10m_blocks(p_start, p_target, p_top_height, p_seed_height): the blocks of buckets
-- p_start..p_target up to height p_top_height that count in flows, with their fee facts' sums. The genesis
-- block is state only (height 0, supply 0): its coinbase is unspendable and no node validates it, and Coin
-- Metrics counts it in no daily flow either (BlkCnt, BlkSizeByte and IssTotNtv are 0 on 2009-01-03).
-- p_seed_height (the last block before p_start, core.btc_primitive_10m_window's seed_height; NULL: none
-- known) bounds the heights from below: buckets rise with height, so no block of the window is at or
-- below it. The window's parts take it too and bound every per-block relation they read to
-- p_seed_height < height <= p_top_height: on TimescaleDB only a height range on each relation lets the
-- planner exclude the chunks below the window (planning every chunk of a long chain cost about 1 s per
-- one-block build).
-- The parts drop their 3-argument forms of before (same name, a new optional argument).
DROP FUNCTION IF EXISTS core.btc_primitive_10m_blocks(timestamptz, timestamptz, bigint);
DROP FUNCTION IF EXISTS core.btc_primitive_10m_flows(timestamptz, timestamptz, bigint);
DROP FUNCTION IF EXISTS core.btc_primitive_10m_statistics(timestamptz, timestamptz, bigint);
DROP FUNCTION IF EXISTS core.btc_primitive_10m_block_span(timestamptz, timestamptz, bigint);
CREATE OR REPLACE FUNCTION core.btc_primitive_10m_blocks(
    p_start timestamptz, p_target timestamptz, p_top_height bigint, p_seed_height bigint DEFAULT NULL
)
RETURNS TABLE (
    bucket_start_utc timestamptz,
    height bigint,
    block_time timestamptz,
    fee_tx_count integer,
    fee_total_sat bigint,
    fee_vsize_total_vb bigint,
    min_feerate_sat_vb numeric,
    max_feerate_sat_vb numeric
)
LANGUAGE sql STABLE
AS $$
    SELECT
        pb.bucket_start_utc,
        pb.height,
        pb.block_time,
        ff.fee_tx_count,
        ff.fee_total_sat,
        ff.fee_vsize_total_vb,
        ff.min_feerate_sat_vb,
        ff.max_feerate_sat_vb
    FROM core.btc_primitive_block AS pb
    INNER JOIN core.btc_block_fee_facts AS ff ON pb.height = ff.height
    WHERE pb.height > coalesce(p_seed_height, 0) AND pb.height <= p_top_height
      AND ff.height > coalesce(p_seed_height, 0) AND ff.height <= p_top_height
      AND pb.bucket_start_utc BETWEEN p_start AND p_target
$$;
COMMENT ON FUNCTION core.btc_primitive_10m_blocks(timestamptz, timestamptz, bigint, bigint) IS 'Blocks counted in the flows of a 10m window, with their fee facts sums.';

-- api fields of core.btc_primitive_10m: block_count, issued_sat_10m=issued_sat, fees_sat_10m=fee_sat,
--     total_fee_sat_10m=fee_sat, miner_revenue_sat_10m=miner_revenue_sat, total_out_sat_10m=total_out_sat,
--     transferred_sat_10m=transferred_sat, tx_count_10m=tx_count, non_coinbase_tx_count_10m=non_coinbase_tx_count,
--     input_count_10m=input_count, output_count_10m=output_count, segwit_tx_count_10m=segwit_tx_count,
--     block_size_total_bytes_10m=block_size_bytes, block_weight_total_wu_10m=block_weight_wu,
--     block_vsize_total_vb_10m=block_vsize_vb, tx_size_total_bytes_10m=tx_size_bytes,
--     tx_vsize_total_vb_10m=tx_vsize_vb, sw_total_size_bytes_10m=sw_size_bytes, sw_total_weight_wu_10m=sw_weight_wu,
--     created_output_count_10m=output_count, spent_output_count_10m=input_count,
--     fee_observed_tx_count_10m=fee_obs_n, fee_observed_sat_10m=fee_obs_sat,
--     fee_observed_vsize_vb_10m=fee_obs_vsize_vb
-- core.btc_primitive_10m_flows(p_start, p_target, p_top_height, p_seed_height): per bucket with a counted
-- block, the sums of its blocks' facts (block count, issuance, fees, sizes, counts, fee observations).
-- Buckets without one have no row (the rows part writes 0 there).
CREATE OR REPLACE FUNCTION core.btc_primitive_10m_flows(
    p_start timestamptz, p_target timestamptz, p_top_height bigint, p_seed_height bigint DEFAULT NULL
)
RETURNS TABLE (
    bucket_start_utc timestamptz,
    block_count integer,
    issued_sat bigint,
    fee_sat bigint,
    miner_revenue_sat bigint,
    total_out_sat bigint,
    transferred_sat bigint,
    tx_count bigint,
    non_coinbase_tx_count bigint,
    input_count bigint,
    output_count bigint,
    segwit_tx_count bigint,
    block_size_bytes bigint,
    block_weight_wu bigint,
    block_vsize_vb bigint,
    tx_size_bytes bigint,
    tx_vsize_vb bigint,
    sw_size_bytes bigint,
    sw_weight_wu bigint,
    fee_obs_n bigint,
    fee_obs_sat bigint,
    fee_obs_vsize_vb bigint
)
LANGUAGE sql STABLE
AS $$
    SELECT
        pb.bucket_start_utc,
        count(*)::integer AS block_count,
        sum(pb.issued_sat)::bigint AS issued_sat,
        sum(pb.total_fee_sat)::bigint AS fee_sat,
        sum(pb.miner_revenue_sat)::bigint AS miner_revenue_sat,
        sum(pb.total_out_sat)::bigint AS total_out_sat,
        sum(pb.total_out_sat - pb.coinbase_out_sat)::bigint AS transferred_sat,
        sum(pb.tx_count)::bigint AS tx_count,
        sum(pb.non_coinbase_tx_count)::bigint AS non_coinbase_tx_count,
        sum(pb.input_count)::bigint AS input_count,
        sum(pb.output_count)::bigint AS output_count,
        sum(pb.segwit_tx_count)::bigint AS segwit_tx_count,
        sum(pb.block_size_bytes)::bigint AS block_size_bytes,
        sum(pb.block_weight_wu)::bigint AS block_weight_wu,
        sum(pb.block_vsize_vb)::bigint AS block_vsize_vb,
        sum(pb.tx_size_total_bytes)::bigint AS tx_size_bytes,
        sum(pb.tx_vsize_total_vb)::bigint AS tx_vsize_vb,
        sum(pb.sw_total_size_bytes)::bigint AS sw_size_bytes,
        sum(pb.sw_total_weight_wu)::bigint AS sw_weight_wu,
        sum(b.fee_tx_count)::bigint AS fee_obs_n,
        sum(b.fee_total_sat)::bigint AS fee_obs_sat,
        sum(b.fee_vsize_total_vb)::bigint AS fee_obs_vsize_vb
    -- The counted blocks are core.btc_primitive_10m_blocks' (one rule: genesis counts in no flow).
    FROM core.btc_primitive_10m_blocks(p_start, p_target, p_top_height, p_seed_height) AS b
    INNER JOIN core.btc_primitive_block AS pb ON b.height = pb.height
    WHERE pb.height > coalesce(p_seed_height, 0) AND pb.height <= p_top_height
    GROUP BY pb.bucket_start_utc
$$;
COMMENT ON FUNCTION core.btc_primitive_10m_flows(timestamptz, timestamptz, bigint, bigint) IS 'Flow sums per 10m bucket of a build window, from per-block facts.';

-- api fields of core.btc_primitive_10m: block_interval_count_10m=interval_n,
--     block_interval_sum_sec_10m=interval_total_sec, block_interval_median_sec_10m=interval_median_sec,
--     median_fee_sat_10m=median_fee_sat, median_feerate_sat_vb_10m=median_feerate_sat_vb,
--     min_feerate_sat_vb_10m=min_feerate_sat_vb, max_feerate_sat_vb_10m=max_feerate_sat_vb,
--     fee_p10_sat_10m=fee_p10_sat, fee_p25_sat_10m=fee_p25_sat, fee_p75_sat_10m=fee_p75_sat,
--     fee_p90_sat_10m=fee_p90_sat, feerate_p10_sat_vb_10m=feerate_p10_sat_vb,
--     feerate_p25_sat_vb_10m=feerate_p25_sat_vb, feerate_p75_sat_vb_10m=feerate_p75_sat_vb,
--     feerate_p90_sat_vb_10m=feerate_p90_sat_vb
-- core.btc_primitive_10m_statistics(p_start, p_target, p_top_height, p_seed_height): per bucket with a
-- counted block,
--   block intervals: between consecutive blocks of the bucket by header time (count, sum, exact median:
--   mean of the lower and upper middle value);
--   fees: core.btc_fee_stats_of_blocks over the bucket's blocks with fee observations (the one
--   computation of a bucket's median fee, feerate median and percentiles), min/max feerate from the
--   per-block min/max. NULL where undefined (fewer than 2 blocks; no fee observation).
CREATE OR REPLACE FUNCTION core.btc_primitive_10m_statistics(
    p_start timestamptz, p_target timestamptz, p_top_height bigint, p_seed_height bigint DEFAULT NULL
)
RETURNS TABLE (
    bucket_start_utc timestamptz,
    interval_n integer,
    interval_total_sec bigint,
    interval_median_sec numeric,
    median_fee_sat numeric,
    fee_p10_sat bigint,
    fee_p25_sat bigint,
    fee_p75_sat bigint,
    fee_p90_sat bigint,
    median_feerate_sat_vb numeric,
    min_feerate_sat_vb numeric,
    max_feerate_sat_vb numeric,
    feerate_p10_sat_vb bigint,
    feerate_p25_sat_vb bigint,
    feerate_p75_sat_vb bigint,
    feerate_p90_sat_vb bigint
)
LANGUAGE sql STABLE
AS $$
    WITH blocks AS (
        SELECT
            b.bucket_start_utc,
            b.height,
            b.fee_tx_count,
            b.min_feerate_sat_vb,
            b.max_feerate_sat_vb,
            (extract(EPOCH FROM b.block_time)
             - extract(EPOCH FROM lag(b.block_time) OVER (PARTITION BY b.bucket_start_utc ORDER BY b.height)))::bigint
                AS interval_sec
        FROM core.btc_primitive_10m_blocks(p_start, p_target, p_top_height, p_seed_height) AS b
    ),

    per_bucket AS (
        SELECT
            b.bucket_start_utc,
            (count(b.interval_sec))::integer AS interval_n,
            sum(b.interval_sec)::bigint AS interval_total_sec,
            round(core.exact_median(array_agg(b.interval_sec ORDER BY b.interval_sec)
                                    FILTER (WHERE b.interval_sec IS NOT NULL)), 8) AS interval_median_sec,
            array_agg(b.height ORDER BY b.height) FILTER (WHERE b.fee_tx_count > 0) AS fee_heights,
            min(b.min_feerate_sat_vb) AS min_feerate_sat_vb,
            max(b.max_feerate_sat_vb) AS max_feerate_sat_vb
        FROM blocks AS b
        GROUP BY b.bucket_start_utc
    ),

    -- The fee statistics of a bucket: core.btc_fee_stats_of_blocks over its blocks with observations. For
    -- the common bucket of one such block that is the block's stored statistics, read here set-based
    -- (the same values the function returns for one block, without a call per bucket). MATERIALIZED: once
    -- per bucket whatever the join below (a plan estimating one bucket put it on the inner side of a
    -- nested loop and called the function again for every bucket: 3,458 calls for 136 buckets).
    fee_stats AS MATERIALIZED (
        SELECT
            pb.bucket_start_utc,
            ff.median_fee_sat,
            ff.fee_p10_sat,
            ff.fee_p25_sat,
            ff.fee_p75_sat,
            ff.fee_p90_sat,
            ff.median_feerate_sat_vb,
            ff.feerate_p10_sat_vb,
            ff.feerate_p25_sat_vb,
            ff.feerate_p75_sat_vb,
            ff.feerate_p90_sat_vb
        FROM per_bucket AS pb
        INNER JOIN core.btc_block_fee_facts AS ff ON pb.fee_heights[1] = ff.height
        WHERE cardinality(pb.fee_heights) = 1
          AND ff.height > coalesce(p_seed_height, 0) AND ff.height <= p_top_height
        UNION ALL
        SELECT
            pb.bucket_start_utc,
            m.median_fee_sat,
            m.fee_p10_sat,
            m.fee_p25_sat,
            m.fee_p75_sat,
            m.fee_p90_sat,
            m.median_feerate_sat_vb,
            m.feerate_p10_sat_vb,
            m.feerate_p25_sat_vb,
            m.feerate_p75_sat_vb,
            m.feerate_p90_sat_vb
        FROM per_bucket AS pb
        CROSS JOIN LATERAL core.btc_fee_stats_of_blocks(pb.fee_heights) AS m
        WHERE cardinality(pb.fee_heights) > 1
    )

    SELECT
        pb.bucket_start_utc,
        pb.interval_n,
        coalesce(pb.interval_total_sec, 0) AS interval_total_sec,
        pb.interval_median_sec,
        fs.median_fee_sat,
        fs.fee_p10_sat,
        fs.fee_p25_sat,
        fs.fee_p75_sat,
        fs.fee_p90_sat,
        fs.median_feerate_sat_vb,
        pb.min_feerate_sat_vb,
        pb.max_feerate_sat_vb,
        fs.feerate_p10_sat_vb,
        fs.feerate_p25_sat_vb,
        fs.feerate_p75_sat_vb,
        fs.feerate_p90_sat_vb
    FROM per_bucket AS pb
    LEFT JOIN fee_stats AS fs ON pb.bucket_start_utc = fs.bucket_start_utc
$$;
COMMENT ON FUNCTION core.btc_primitive_10m_statistics(timestamptz, timestamptz, bigint, bigint) IS 'Block-interval and fee statistics per 10m bucket of a build window, from per-block facts.';

-- core.btc_primitive_10m_state(p_start, p_target, p_top_height, p_seed_height): every bucket p_start..p_target
-- with the state after the last block at or before it (genesis included; p_seed_height, the last block
-- before p_start, until the window's first block): its height, running supply, difficulty, chainwork,
-- halving epoch and UTXO set (core.btc_block_utxo_facts; NULL where that block has none). Heights rise with
-- buckets, so that block is the running max of the buckets' last heights. Only the blocks p_seed_height ..
-- p_top_height are read (a range of the primary keys): a build of the newest bucket reads its blocks and
-- the seed, whatever the length of the chain below.
CREATE OR REPLACE FUNCTION core.btc_primitive_10m_state(
    p_start timestamptz, p_target timestamptz, p_top_height bigint, p_seed_height bigint
)
RETURNS TABLE (
    bucket_start_utc timestamptz,
    state_height bigint,
    cumulative_supply_sat bigint,
    difficulty numeric,
    chainwork text,
    halving_epoch integer,
    utxo_count_total bigint,
    utxo_bogo_total_bytes bigint
)
LANGUAGE sql STABLE
AS $$
    WITH last_heights AS (
        SELECT
            pb.bucket_start_utc,
            max(pb.height) AS last_height
        FROM core.btc_primitive_block AS pb
        WHERE pb.height BETWEEN coalesce(p_seed_height, 0) AND p_top_height
          AND pb.bucket_start_utc BETWEEN p_start AND p_target
        GROUP BY pb.bucket_start_utc
    ),

    timeline AS (
        SELECT
            g.bucket_start_utc,
            coalesce(max(lh.last_height) OVER (ORDER BY g.bucket_start_utc), p_seed_height) AS state_height
        FROM generate_series(p_start, p_target, INTERVAL '10 minutes') AS g (bucket_start_utc)
        LEFT JOIN last_heights AS lh ON g.bucket_start_utc = lh.bucket_start_utc
    ),

    states AS (
        SELECT
            pb.height,
            pb.cumulative_supply_sat,
            pb.difficulty,
            pb.chainwork
        FROM core.btc_primitive_block AS pb
        WHERE pb.height BETWEEN coalesce(p_seed_height, 0) AND p_top_height
    ),

    utxo_states AS (
        SELECT
            uf.height,
            uf.utxo_count_total,
            uf.utxo_bogo_total_bytes
        FROM core.btc_block_utxo_facts AS uf
        WHERE uf.height BETWEEN coalesce(p_seed_height, 0) AND p_top_height
    )

    SELECT
        tl.bucket_start_utc,
        s.height AS state_height,
        s.cumulative_supply_sat,
        s.difficulty,
        s.chainwork,
        core.btc_halving_epoch(s.height) AS halving_epoch,
        us.utxo_count_total,
        us.utxo_bogo_total_bytes
    FROM timeline AS tl
    LEFT JOIN states AS s ON tl.state_height = s.height
    LEFT JOIN utxo_states AS us ON tl.state_height = us.height
$$;
COMMENT ON FUNCTION core.btc_primitive_10m_state(timestamptz, timestamptz, bigint, bigint) IS 'State carried into each 10m bucket of a build window (supply, difficulty, chainwork, UTXO set), from the window''s blocks and its seed block only.';

-- ---------------------------------------------------------------------------------------------------------
-- Block span and hash rate estimates (the seed's backbone columns, revision 0009)
-- ---------------------------------------------------------------------------------------------------------

-- api fields of core.btc_primitive_10m: first_height, last_height, first_block_time_utc, last_block_time_utc,
--     hashrate_est_last, hashrate_est_mean_10m
-- core.btc_primitive_10m_block_span(p_start, p_target, p_top_height, p_seed_height): per bucket with a
-- counted block (the blocks of core.btc_primitive_10m_blocks: the genesis block is state only), the
-- heights of its first and last block, their header times (block_time of the lowest and of the highest
-- height: header times may go backwards, so these are not min/max), and the hash rate estimates (H/s,
-- 8 decimals, rule core.btc_hashrate_hs): hashrate_est_last = the last block's difficulty x 2^32 / 600 s,
-- hashrate_est_mean_10m = the mean of that estimate over the bucket's blocks (their summed difficulty x
-- 2^32 / (600 s x block count)). Buckets without a counted block have no row: the rows part leaves
-- these NULL there. Revision 0009 fills rows stored before it through this function.
CREATE OR REPLACE FUNCTION core.btc_primitive_10m_block_span(
    p_start timestamptz, p_target timestamptz, p_top_height bigint, p_seed_height bigint DEFAULT NULL
)
RETURNS TABLE (
    bucket_start_utc timestamptz,
    first_height bigint,
    last_height bigint,
    first_block_time_utc timestamptz,
    last_block_time_utc timestamptz,
    hashrate_est_last numeric,
    hashrate_est_mean_10m numeric
)
LANGUAGE sql STABLE
AS $$
    SELECT
        b.bucket_start_utc,
        min(b.height) AS first_height,
        max(b.height) AS last_height,
        (array_agg(b.block_time ORDER BY b.height))[1] AS first_block_time_utc,
        (array_agg(b.block_time ORDER BY b.height DESC))[1] AS last_block_time_utc,
        round(core.btc_hashrate_hs((array_agg(pb.difficulty ORDER BY b.height DESC))[1], 600), 8)
            AS hashrate_est_last,
        round(core.btc_hashrate_hs(sum(pb.difficulty), 600 * count(*)), 8) AS hashrate_est_mean_10m
    FROM core.btc_primitive_10m_blocks(p_start, p_target, p_top_height, p_seed_height) AS b
    INNER JOIN core.btc_primitive_block AS pb ON b.height = pb.height
    WHERE pb.height > coalesce(p_seed_height, 0) AND pb.height <= p_top_height
    GROUP BY b.bucket_start_utc
$$;
COMMENT ON FUNCTION core.btc_primitive_10m_block_span(timestamptz, timestamptz, bigint, bigint) IS 'First/last height and header time of each 10m bucket''s blocks and its hash rate estimates.';

-- api fields of core.btc_primitive_10m: *
-- core.btc_primitive_10m_rows(p_start, p_target, p_top_height, p_seed_height): the rows of
-- core.btc_primitive_10m for every bucket p_start..p_target (in the table's column order): flows summed
-- (0 when empty), state carried forward (core.btc_primitive_10m_state), undefined statistics NULL, price
-- fields NULL (written after the rows by core.set_primitive_10m_prices), block span and hash rate
-- estimates from core.btc_primitive_10m_block_span. Reads only the window's blocks, their fee facts and
-- the seed block.
CREATE OR REPLACE FUNCTION core.btc_primitive_10m_rows(
    p_start timestamptz, p_target timestamptz, p_top_height bigint, p_seed_height bigint
)
RETURNS SETOF core.btc_primitive_10m
LANGUAGE sql STABLE
AS $$
    -- Every bucket of the window: its state and its flows (0 without blocks).
    WITH buckets AS (
        SELECT
            s.bucket_start_utc,
            s.state_height,
            s.cumulative_supply_sat,
            s.difficulty,
            s.chainwork,
            s.halving_epoch,
            s.utxo_count_total,
            s.utxo_bogo_total_bytes,
            coalesce(fl.block_count, 0) AS block_count,
            coalesce(fl.issued_sat, 0) AS issued_sat,
            coalesce(fl.fee_sat, 0) AS fee_sat,
            coalesce(fl.miner_revenue_sat, 0) AS miner_revenue_sat,
            coalesce(fl.total_out_sat, 0) AS total_out_sat,
            coalesce(fl.transferred_sat, 0) AS transferred_sat,
            coalesce(fl.tx_count, 0) AS tx_count,
            coalesce(fl.non_coinbase_tx_count, 0) AS non_coinbase_tx_count,
            coalesce(fl.input_count, 0) AS input_count,
            coalesce(fl.output_count, 0) AS output_count,
            coalesce(fl.segwit_tx_count, 0) AS segwit_tx_count,
            coalesce(fl.block_size_bytes, 0) AS block_size_bytes,
            coalesce(fl.block_weight_wu, 0) AS block_weight_wu,
            coalesce(fl.block_vsize_vb, 0) AS block_vsize_vb,
            coalesce(fl.tx_size_bytes, 0) AS tx_size_bytes,
            coalesce(fl.tx_vsize_vb, 0) AS tx_vsize_vb,
            coalesce(fl.sw_size_bytes, 0) AS sw_size_bytes,
            coalesce(fl.sw_weight_wu, 0) AS sw_weight_wu,
            coalesce(fl.fee_obs_n, 0) AS fee_obs_n,
            coalesce(fl.fee_obs_sat, 0) AS fee_obs_sat,
            coalesce(fl.fee_obs_vsize_vb, 0) AS fee_obs_vsize_vb
        FROM core.btc_primitive_10m_state(p_start, p_target, p_top_height, p_seed_height) AS s
        LEFT JOIN core.btc_primitive_10m_flows(p_start, p_target, p_top_height, p_seed_height) AS fl
            ON s.bucket_start_utc = fl.bucket_start_utc
    )

    SELECT
        f.bucket_start_utc,
        f.block_count,
        f.issued_sat AS issued_sat_10m,
        f.fee_sat AS fees_sat_10m,
        f.fee_sat AS total_fee_sat_10m,
        f.miner_revenue_sat AS miner_revenue_sat_10m,
        f.total_out_sat AS total_out_sat_10m,
        f.transferred_sat AS transferred_sat_10m,
        round(f.transferred_sat::numeric / 100000000, 8)::numeric(24, 8) AS transferred_btc_10m,
        f.tx_count AS tx_count_10m,
        f.non_coinbase_tx_count AS non_coinbase_tx_count_10m,
        f.input_count AS input_count_10m,
        f.output_count AS output_count_10m,
        f.segwit_tx_count AS segwit_tx_count_10m,
        f.block_size_bytes AS block_size_total_bytes_10m,
        f.block_weight_wu AS block_weight_total_wu_10m,
        f.block_vsize_vb AS block_vsize_total_vb_10m,
        f.tx_size_bytes AS tx_size_total_bytes_10m,
        f.tx_vsize_vb AS tx_vsize_total_vb_10m,
        f.sw_size_bytes AS sw_total_size_bytes_10m,
        f.sw_weight_wu AS sw_total_weight_wu_10m,
        f.output_count - f.input_count AS utxo_increase_10m,
        f.output_count AS created_output_count_10m,
        f.input_count AS spent_output_count_10m,
        round(f.tx_count::numeric / 600, 8) AS tx_rate_per_sec_10m,
        f.fee_obs_n AS fee_observed_tx_count_10m,
        f.fee_obs_sat AS fee_observed_sat_10m,
        f.fee_obs_vsize_vb AS fee_observed_vsize_vb_10m,
        coalesce(st.interval_n, 0) AS block_interval_count_10m,
        coalesce(st.interval_total_sec, 0) AS block_interval_sum_sec_10m,
        f.cumulative_supply_sat AS supply_total_sat,
        f.difficulty AS difficulty_last,
        f.chainwork AS chainwork_last,
        f.state_height AS best_block_height_last,
        f.halving_epoch,
        CASE WHEN st.interval_n > 0 THEN round(st.interval_total_sec::numeric / st.interval_n, 8) END
            AS block_interval_mean_sec_10m,
        st.interval_median_sec AS block_interval_median_sec_10m,
        CASE WHEN f.non_coinbase_tx_count > 0 THEN round(f.fee_sat::numeric / f.non_coinbase_tx_count, 8) END
            AS avg_fee_sat_10m,
        st.median_fee_sat AS median_fee_sat_10m,
        CASE WHEN f.fee_obs_vsize_vb > 0 THEN round(f.fee_obs_sat::numeric / f.fee_obs_vsize_vb, 8) END
            AS avg_feerate_sat_vb_10m,
        st.min_feerate_sat_vb AS min_feerate_sat_vb_10m,
        st.max_feerate_sat_vb AS max_feerate_sat_vb_10m,
        CASE WHEN f.non_coinbase_tx_count > 0 THEN round(f.segwit_tx_count::numeric / f.non_coinbase_tx_count, 8) END
            AS segwit_share_10m,
        CASE WHEN f.tx_count > 0 THEN round(f.tx_size_bytes::numeric / f.tx_count, 8) END AS tx_size_mean_bytes_10m,
        CASE WHEN f.block_count > 0 THEN round(f.block_size_bytes::numeric / f.block_count, 8) END
            AS block_size_mean_bytes_10m,
        CASE WHEN f.block_count > 0 THEN round(f.block_weight_wu::numeric / f.block_count, 8) END
            AS block_weight_mean_wu_10m,
        CASE WHEN f.block_count > 0 THEN round(f.miner_revenue_sat::numeric / f.block_count, 8) END
            AS block_reward_sat_avg,
        -- Price fields: NULL here; their one writer is core.set_primitive_10m_prices (section "Price
        -- fields" below), which core.build_primitive_10m calls after writing these rows.
        NULL::numeric AS open_price_usd,
        NULL::numeric AS high_price_usd,
        NULL::numeric AS low_price_usd,
        NULL::numeric AS close_price_usd,
        NULL::numeric AS market_cap_usd,
        st.median_feerate_sat_vb AS median_feerate_sat_vb_10m,
        st.fee_p10_sat AS fee_p10_sat_10m,
        st.fee_p25_sat AS fee_p25_sat_10m,
        st.fee_p75_sat AS fee_p75_sat_10m,
        st.fee_p90_sat AS fee_p90_sat_10m,
        st.feerate_p10_sat_vb AS feerate_p10_sat_vb_10m,
        st.feerate_p25_sat_vb AS feerate_p25_sat_vb_10m,
        st.feerate_p75_sat_vb AS feerate_p75_sat_vb_10m,
        st.feerate_p90_sat_vb AS feerate_p90_sat_vb_10m,
        -- UTXO set (revision 0008; core.btc_primitive_10m_utxo in 025_btc_utxo_facts.sql): the set after the
        -- bucket's last block (carried), and the bucket's bogosize change (0 without blocks; NULL when a
        -- block's prevouts are unknown).
        f.utxo_count_total,
        CASE WHEN ut.bucket_start_utc IS NULL THEN 0 ELSE ut.utxo_size_inc_bytes END AS utxo_size_inc_bytes_10m,
        f.utxo_bogo_total_bytes AS utxo_set_size_total_bytes,
        -- Block span and hash rate estimates (revision 0009; section at the end of this file).
        sp.first_height,
        sp.last_height,
        sp.first_block_time_utc,
        sp.last_block_time_utc,
        core.epoch_ms(f.bucket_start_utc) AS open_time_ms,
        sp.hashrate_est_last,
        sp.hashrate_est_mean_10m
    FROM buckets AS f
    LEFT JOIN core.btc_primitive_10m_statistics(p_start, p_target, p_top_height, p_seed_height) AS st
        ON f.bucket_start_utc = st.bucket_start_utc
    LEFT JOIN core.btc_primitive_10m_block_span(p_start, p_target, p_top_height, p_seed_height) AS sp
        ON f.bucket_start_utc = sp.bucket_start_utc
    LEFT JOIN core.btc_primitive_10m_utxo(p_start, p_target, p_top_height, p_seed_height) AS ut
        ON f.bucket_start_utc = ut.bucket_start_utc
$$;
COMMENT ON FUNCTION core.btc_primitive_10m_rows(timestamptz, timestamptz, bigint, bigint) IS 'The btc_primitive_10m rows of a bucket range, computed from per-block facts (no write).';

-- core.build_primitive_10m(p_target, p_max_buckets)
-- Writes the continuous 10-minute backbone core.btc_primitive_10m, set-based, in one UPSERT: the buckets
-- of core.btc_primitive_10m_window (from the checkpoint btc_primitive_10m_builder:10m, locked while it
-- runs) with the rows of core.btc_primitive_10m_rows. The checkpoint moves in the same transaction,
-- rollups and metrics are rewound to the first bucket written, NOTIFY primitive_ready is delivered on
-- commit. Returns the range written (nothing when no block is stored). Re-running yields identical rows.
CREATE OR REPLACE FUNCTION core.build_primitive_10m(
    p_target timestamptz DEFAULT NULL,
    p_max_buckets integer DEFAULT NULL
)
RETURNS TABLE (from_bucket timestamptz, to_bucket timestamptz, bucket_count integer, last_height bigint)
LANGUAGE plpgsql VOLATILE
-- A build is a short statement over per-block facts: compiling it with JIT (which the planner's
-- estimates of the helper functions' row counts can trigger) costs far more than running it.
SET jit = off
-- The plans of the statements here and in what they call are chosen per window below (the setting is
-- restored when the function returns).
SET plan_cache_mode = auto
AS $$
DECLARE
    v_cp record;
    v_raw_height bigint;
    v_window record;
    v_rows integer;
BEGIN
    SELECT c.last_height INTO v_raw_height
    FROM core.sync_checkpoints AS c
    WHERE c.chain = 'btc' AND c.component = core.checkpoint_component('raw_blocks') AND c."interval" = 'block';
    IF v_raw_height IS NULL THEN
        RETURN;
    END IF;

    SELECT c.last_height, c.last_bucket_time INTO v_cp
    FROM core.sync_checkpoints AS c
    WHERE c.chain = 'btc' AND c.component = core.checkpoint_component('primitive_10m') AND c."interval" = '10m'
    FOR UPDATE;

    SELECT w.start_bucket, w.target_bucket, w.top_height, w.seed_height INTO v_window
    FROM core.btc_primitive_10m_window(v_raw_height, v_cp.last_height, v_cp.last_bucket_time, p_target, p_max_buckets)
        AS w;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    -- A window of less than a day (the step after a new block, an idle timeline's next buckets) runs generic
    -- plans, made once per session: planning the UPSERT for the window's values costs several times more
    -- than running it, and on a long chain the plan cache's own choice was to re-plan it at every build (its
    -- generic cost, estimated for an unknown window, is far above a one-bucket plan's). On TimescaleDB too:
    -- every per-block relation of the window is bounded by its seed and top heights, so the generic plan
    -- excludes the chunks outside them when it starts (without those bounds it hash-joined every chunk:
    -- 1.4 s of CPU for one bucket of a 15-year chain). A longer window (a rebuild, a catch-up chunk) is
    -- planned for its size.
    IF v_window.target_bucket - v_window.start_bucket >= INTERVAL '1 day' THEN
        PERFORM set_config('plan_cache_mode', 'force_custom_plan', true);
    ELSE
        PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
    END IF;
    INSERT INTO core.btc_primitive_10m AS p
    SELECT r.*
    FROM core.btc_primitive_10m_rows(v_window.start_bucket, v_window.target_bucket, v_window.top_height,
                                     v_window.seed_height) AS r
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
        -- (price fields: core.set_primitive_10m_prices below, their one writer)
        median_feerate_sat_vb_10m = excluded.median_feerate_sat_vb_10m,
        fee_p10_sat_10m = excluded.fee_p10_sat_10m,
        fee_p25_sat_10m = excluded.fee_p25_sat_10m,
        fee_p75_sat_10m = excluded.fee_p75_sat_10m,
        fee_p90_sat_10m = excluded.fee_p90_sat_10m,
        feerate_p10_sat_vb_10m = excluded.feerate_p10_sat_vb_10m,
        feerate_p25_sat_vb_10m = excluded.feerate_p25_sat_vb_10m,
        feerate_p75_sat_vb_10m = excluded.feerate_p75_sat_vb_10m,
        feerate_p90_sat_vb_10m = excluded.feerate_p90_sat_vb_10m,
        utxo_count_total = excluded.utxo_count_total,
        utxo_size_inc_bytes_10m = excluded.utxo_size_inc_bytes_10m,
        utxo_set_size_total_bytes = excluded.utxo_set_size_total_bytes,
        first_height = excluded.first_height,
        last_height = excluded.last_height,
        first_block_time_utc = excluded.first_block_time_utc,
        last_block_time_utc = excluded.last_block_time_utc,
        open_time_ms = excluded.open_time_ms,
        hashrate_est_last = excluded.hashrate_est_last,
        hashrate_est_mean_10m = excluded.hashrate_est_mean_10m;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    -- The window's price fields (a new row has none yet; a rewritten one may have a new supply).
    PERFORM core.set_primitive_10m_prices(v_window.start_bucket, v_window.target_bucket);

    PERFORM core.set_checkpoint('btc', core.checkpoint_component('primitive_10m'), '10m', v_window.top_height,
                                v_window.target_bucket, 'ok');
    -- Rollups and metrics redo every period from the window's start on.
    PERFORM core.rewind_checkpoints(
        ARRAY[core.checkpoint_pattern('rollup'), core.checkpoint_pattern('metric')], v_window.start_bucket
    );
    PERFORM pg_notify('primitive_ready', json_build_object(
        'from_bucket', v_window.start_bucket, 'to_bucket', v_window.target_bucket,
        'last_height', v_window.top_height)::text);

    from_bucket := v_window.start_bucket;
    to_bucket := v_window.target_bucket;
    bucket_count := v_rows;
    last_height := v_window.top_height;
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
    WHERE c.chain = 'btc' AND c.component = core.checkpoint_component('primitive_10m') AND c."interval" = '10m'
      AND c.last_height >= p_height
$$;

-- ---------------------------------------------------------------------------------------------------------
-- Price fields of the backbone
-- ---------------------------------------------------------------------------------------------------------

-- api fields of core.btc_primitive_10m: open_price_usd, high_price_usd, low_price_usd, close_price_usd,
--     market_cap_usd
-- core.set_primitive_10m_prices(p_from, p_to): the one writer of core.btc_primitive_10m's price columns.
-- Every backbone row of buckets p_from..p_to gets open/high/low/close_price_usd of the canonical price
-- core.mq_btc_price_10m of its bucket (NULL when it has none) and market_cap_usd = core.market_cap_usd(
-- its supply_total_sat, that close). Called by core.build_primitive_10m for its window (new rows, new
-- supply) and by core.compose_btc_price_10m for its range (new prices), each in its own transaction, so
-- the stored fields always equal the canonical table. Rows already equal are not rewritten. Returns the
-- rows changed. The supply is the target row's own, so a concurrent build that changed it is seen.
CREATE OR REPLACE FUNCTION core.set_primitive_10m_prices(p_from timestamptz, p_to timestamptz)
RETURNS integer
-- PL/pgSQL rather than SQL (not parsed again at every call; every build of the backbone makes one), planned
-- for the call's range every time: on TimescaleDB only that excludes the backbone's other chunks from the
-- UPDATE, whose generic plan (an SQL function's, or a cached one) decompressed every compressed chunk of it
-- (773,603 rows on a 15-year timeline: SQLSTATE 53400, over timescaledb.max_tuples_decompressed_per_dml_transaction).
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_rows integer;
BEGIN
    UPDATE core.btc_primitive_10m AS p
    SET open_price_usd = m.open_price_usd,
        high_price_usd = m.high_price_usd,
        low_price_usd = m.low_price_usd,
        close_price_usd = m.close_price_usd,
        market_cap_usd = core.market_cap_usd(p.supply_total_sat, m.close_price_usd)
    FROM (
        SELECT
            g.bucket_start_utc,
            mq.open_price_usd,
            mq.high_price_usd,
            mq.low_price_usd,
            mq.close_price_usd
        FROM generate_series(p_from, p_to, INTERVAL '10 minutes') AS g (bucket_start_utc)
        LEFT JOIN core.mq_btc_price_10m AS mq
            ON g.bucket_start_utc = mq.bucket_start_utc AND mq.bucket_start_utc BETWEEN p_from AND p_to
    ) AS m
    WHERE p.bucket_start_utc = m.bucket_start_utc
      AND p.bucket_start_utc BETWEEN p_from AND p_to
      AND (p.open_price_usd, p.high_price_usd, p.low_price_usd, p.close_price_usd, p.market_cap_usd)
      IS DISTINCT FROM (
          m.open_price_usd, m.high_price_usd, m.low_price_usd, m.close_price_usd,
          core.market_cap_usd(p.supply_total_sat, m.close_price_usd)
      );
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION core.set_primitive_10m_prices(timestamptz, timestamptz) IS 'The one writer of the backbone''s price fields: canonical OHLC of the bucket and market cap (supply x close).';
