-- btc_primitive_1h, version 3 (revision 0014): the 10m backbone rolled up to hours, chain facts only.
-- Replaces 050_btc_primitive_1h_v2.sql (frozen with revision 0010): the same columns and rules, plus the UTXO
-- set columns of the backbone (revision 0008) at the end: utxo_count_total and utxo_set_size_total_bytes
-- (states: the last 10m bucket's) and utxo_size_inc_bytes (a flow: the sum of utxo_size_inc_bytes_10m; NULL
-- when a bucket's is unknown, never a partial sum). The hour's price is the price rollup's
-- (030_mq_btc_price_1h.sql); api.btc_primitive_1h joins it (sql/functions/090_api_views.sql). A continuous
-- aggregate on TimescaleDB, a table refreshed by core.refresh_rollup on plain PostgreSQL (time_bucket has a
-- date_bin twin there). Frozen with 0014.
-- Rules (data contract): flows sum; states take the last 10m bucket of the hour; means and shares are
-- recomputed from the summed numerators and denominators; min/max of the parts. Medians are not rolled
-- up: exact hourly/daily median fees are in btc_fee_metrics_<interval> (from the per-block fee facts);
-- the block-interval median is unavailable above 10m.
SELECT
    time_bucket(INTERVAL '1 hour', p.bucket_start_utc) AS bucket_start_utc,
    count(*)::INTEGER AS bucket_count_10m,
    sum(p.block_count)::INTEGER AS block_count,
    sum(p.issued_sat_10m)::BIGINT AS issued_sat,
    sum(p.fees_sat_10m)::BIGINT AS fees_sat,
    sum(p.total_fee_sat_10m)::BIGINT AS total_fee_sat,
    sum(p.miner_revenue_sat_10m)::BIGINT AS miner_revenue_sat,
    sum(p.total_out_sat_10m)::BIGINT AS total_out_sat,
    sum(p.transferred_sat_10m)::BIGINT AS transferred_sat,
    sum(p.transferred_btc_10m) AS transferred_btc,
    sum(p.tx_count_10m)::BIGINT AS tx_count,
    sum(p.non_coinbase_tx_count_10m)::BIGINT AS non_coinbase_tx_count,
    sum(p.input_count_10m)::BIGINT AS input_count,
    sum(p.output_count_10m)::BIGINT AS output_count,
    sum(p.segwit_tx_count_10m)::BIGINT AS segwit_tx_count,
    sum(p.block_size_total_bytes_10m)::BIGINT AS block_size_total_bytes,
    sum(p.block_weight_total_wu_10m)::BIGINT AS block_weight_total_wu,
    sum(p.block_vsize_total_vb_10m)::BIGINT AS block_vsize_total_vb,
    sum(p.tx_size_total_bytes_10m)::BIGINT AS tx_size_total_bytes,
    sum(p.tx_vsize_total_vb_10m)::BIGINT AS tx_vsize_total_vb,
    sum(p.sw_total_size_bytes_10m)::BIGINT AS sw_total_size_bytes,
    sum(p.sw_total_weight_wu_10m)::BIGINT AS sw_total_weight_wu,
    sum(p.utxo_increase_10m)::BIGINT AS utxo_increase,
    sum(p.created_output_count_10m)::BIGINT AS created_output_count,
    sum(p.spent_output_count_10m)::BIGINT AS spent_output_count,
    sum(p.fee_observed_tx_count_10m)::BIGINT AS fee_observed_tx_count,
    sum(p.fee_observed_sat_10m)::BIGINT AS fee_observed_sat,
    sum(p.fee_observed_vsize_vb_10m)::BIGINT AS fee_observed_vsize_vb,
    sum(p.block_interval_count_10m)::BIGINT AS block_interval_count,
    sum(p.block_interval_sum_sec_10m)::BIGINT AS block_interval_sum_sec,
    round(sum(p.tx_count_10m)::NUMERIC / 3600, 8) AS tx_rate_per_sec,
    (array_agg(p.supply_total_sat ORDER BY p.bucket_start_utc DESC))[1] AS supply_total_sat,
    (array_agg(p.difficulty_last ORDER BY p.bucket_start_utc DESC))[1] AS difficulty_last,
    (array_agg(p.chainwork_last ORDER BY p.bucket_start_utc DESC))[1] AS chainwork_last,
    (array_agg(p.best_block_height_last ORDER BY p.bucket_start_utc DESC))[1] AS best_block_height_last,
    (array_agg(p.halving_epoch ORDER BY p.bucket_start_utc DESC))[1] AS halving_epoch,
    CASE
        WHEN sum(p.block_interval_count_10m) > 0
            THEN round(sum(p.block_interval_sum_sec_10m)::NUMERIC / sum(p.block_interval_count_10m), 8)
    END AS block_interval_mean_sec,
    CASE
        WHEN sum(p.non_coinbase_tx_count_10m) > 0
            THEN round(sum(p.fees_sat_10m)::NUMERIC / sum(p.non_coinbase_tx_count_10m), 8)
    END AS avg_fee_sat,
    CASE
        WHEN sum(p.fee_observed_vsize_vb_10m) > 0
            THEN round(sum(p.fee_observed_sat_10m)::NUMERIC / sum(p.fee_observed_vsize_vb_10m), 8)
    END AS avg_feerate_sat_vb,
    min(p.min_feerate_sat_vb_10m) AS min_feerate_sat_vb,
    max(p.max_feerate_sat_vb_10m) AS max_feerate_sat_vb,
    CASE
        WHEN sum(p.non_coinbase_tx_count_10m) > 0
            THEN round(sum(p.segwit_tx_count_10m)::NUMERIC / sum(p.non_coinbase_tx_count_10m), 8)
    END AS segwit_share,
    CASE
        WHEN sum(p.tx_count_10m) > 0 THEN round(sum(p.tx_size_total_bytes_10m)::NUMERIC / sum(p.tx_count_10m), 8)
    END AS tx_size_mean_bytes,
    CASE
        WHEN sum(p.block_count) > 0 THEN round(sum(p.block_size_total_bytes_10m)::NUMERIC / sum(p.block_count), 8)
    END AS block_size_mean_bytes,
    CASE
        WHEN sum(p.block_count) > 0 THEN round(sum(p.block_weight_total_wu_10m)::NUMERIC / sum(p.block_count), 8)
    END AS block_weight_mean_wu,
    CASE
        WHEN sum(p.block_count) > 0 THEN round(sum(p.miner_revenue_sat_10m)::NUMERIC / sum(p.block_count), 8)
    END AS block_reward_sat_avg,
    (array_agg(p.utxo_count_total ORDER BY p.bucket_start_utc DESC))[1] AS utxo_count_total,
    CASE
        WHEN count(p.utxo_size_inc_bytes_10m) = count(*) THEN sum(p.utxo_size_inc_bytes_10m)::BIGINT
    END AS utxo_size_inc_bytes,
    (array_agg(p.utxo_set_size_total_bytes ORDER BY p.bucket_start_utc DESC))[1] AS utxo_set_size_total_bytes
FROM core.btc_primitive_10m AS p
GROUP BY time_bucket(INTERVAL '1 hour', p.bucket_start_utc)
