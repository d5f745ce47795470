-- btc_primitive_24h, version 3 (revision 0014): days (UTC midnight) rolled up from btc_primitive_1h
-- (hierarchical: 10m -> 1h -> 24h), chain facts only. Replaces 060_btc_primitive_24h_v2.sql (frozen with
-- revision 0010): the same columns and rules plus the UTXO set columns at the end, rolled up from the hourly
-- ones as 070_btc_primitive_1h_v3.sql rolls them up from 10m (states: the last hour's; utxo_size_inc_bytes:
-- the sum, NULL when an hour's is unknown). Prices: api.btc_primitive_24h joins mq_btc_price_24h
-- (040_mq_btc_price_24h.sql). Same engines as 070_btc_primitive_1h_v3.sql; every figure is recomputed from
-- the hourly parts. Frozen with 0014.
SELECT
    time_bucket(INTERVAL '1 day', p.bucket_start_utc) AS bucket_start_utc,
    sum(p.bucket_count_10m)::INTEGER AS bucket_count_10m,
    sum(p.block_count)::INTEGER AS block_count,
    sum(p.issued_sat)::BIGINT AS issued_sat,
    sum(p.fees_sat)::BIGINT AS fees_sat,
    sum(p.total_fee_sat)::BIGINT AS total_fee_sat,
    sum(p.miner_revenue_sat)::BIGINT AS miner_revenue_sat,
    sum(p.total_out_sat)::BIGINT AS total_out_sat,
    sum(p.transferred_sat)::BIGINT AS transferred_sat,
    sum(p.transferred_btc) AS transferred_btc,
    sum(p.tx_count)::BIGINT AS tx_count,
    sum(p.non_coinbase_tx_count)::BIGINT AS non_coinbase_tx_count,
    sum(p.input_count)::BIGINT AS input_count,
    sum(p.output_count)::BIGINT AS output_count,
    sum(p.segwit_tx_count)::BIGINT AS segwit_tx_count,
    sum(p.block_size_total_bytes)::BIGINT AS block_size_total_bytes,
    sum(p.block_weight_total_wu)::BIGINT AS block_weight_total_wu,
    sum(p.block_vsize_total_vb)::BIGINT AS block_vsize_total_vb,
    sum(p.tx_size_total_bytes)::BIGINT AS tx_size_total_bytes,
    sum(p.tx_vsize_total_vb)::BIGINT AS tx_vsize_total_vb,
    sum(p.sw_total_size_bytes)::BIGINT AS sw_total_size_bytes,
    sum(p.sw_total_weight_wu)::BIGINT AS sw_total_weight_wu,
    sum(p.utxo_increase)::BIGINT AS utxo_increase,
    sum(p.created_output_count)::BIGINT AS created_output_count,
    sum(p.spent_output_count)::BIGINT AS spent_output_count,
    sum(p.fee_observed_tx_count)::BIGINT AS fee_observed_tx_count,
    sum(p.fee_observed_sat)::BIGINT AS fee_observed_sat,
    sum(p.fee_observed_vsize_vb)::BIGINT AS fee_observed_vsize_vb,
    sum(p.block_interval_count)::BIGINT AS block_interval_count,
    sum(p.block_interval_sum_sec)::BIGINT AS block_interval_sum_sec,
    round(sum(p.tx_count)::NUMERIC / 86400, 8) AS tx_rate_per_sec,
    (array_agg(p.supply_total_sat ORDER BY p.bucket_start_utc DESC))[1] AS supply_total_sat,
    (array_agg(p.difficulty_last ORDER BY p.bucket_start_utc DESC))[1] AS difficulty_last,
    (array_agg(p.chainwork_last ORDER BY p.bucket_start_utc DESC))[1] AS chainwork_last,
    (array_agg(p.best_block_height_last ORDER BY p.bucket_start_utc DESC))[1] AS best_block_height_last,
    (array_agg(p.halving_epoch ORDER BY p.bucket_start_utc DESC))[1] AS halving_epoch,
    CASE
        WHEN sum(p.block_interval_count) > 0
            THEN round(sum(p.block_interval_sum_sec)::NUMERIC / sum(p.block_interval_count), 8)
    END AS block_interval_mean_sec,
    CASE
        WHEN sum(p.non_coinbase_tx_count) > 0
            THEN round(sum(p.fees_sat)::NUMERIC / sum(p.non_coinbase_tx_count), 8)
    END AS avg_fee_sat,
    CASE
        WHEN sum(p.fee_observed_vsize_vb) > 0
            THEN round(sum(p.fee_observed_sat)::NUMERIC / sum(p.fee_observed_vsize_vb), 8)
    END AS avg_feerate_sat_vb,
    min(p.min_feerate_sat_vb) AS min_feerate_sat_vb,
    max(p.max_feerate_sat_vb) AS max_feerate_sat_vb,
    CASE
        WHEN sum(p.non_coinbase_tx_count) > 0
            THEN round(sum(p.segwit_tx_count)::NUMERIC / sum(p.non_coinbase_tx_count), 8)
    END AS segwit_share,
    CASE
        WHEN sum(p.tx_count) > 0 THEN round(sum(p.tx_size_total_bytes)::NUMERIC / sum(p.tx_count), 8)
    END AS tx_size_mean_bytes,
    CASE
        WHEN sum(p.block_count) > 0 THEN round(sum(p.block_size_total_bytes)::NUMERIC / sum(p.block_count), 8)
    END AS block_size_mean_bytes,
    CASE
        WHEN sum(p.block_count) > 0 THEN round(sum(p.block_weight_total_wu)::NUMERIC / sum(p.block_count), 8)
    END AS block_weight_mean_wu,
    CASE
        WHEN sum(p.block_count) > 0 THEN round(sum(p.miner_revenue_sat)::NUMERIC / sum(p.block_count), 8)
    END AS block_reward_sat_avg,
    (array_agg(p.utxo_count_total ORDER BY p.bucket_start_utc DESC))[1] AS utxo_count_total,
    CASE
        WHEN count(p.utxo_size_inc_bytes) = count(*) THEN sum(p.utxo_size_inc_bytes)::BIGINT
    END AS utxo_size_inc_bytes,
    (array_agg(p.utxo_set_size_total_bytes ORDER BY p.bucket_start_utc DESC))[1] AS utxo_set_size_total_bytes
FROM core.btc_primitive_1h AS p
GROUP BY time_bucket(INTERVAL '1 day', p.bucket_start_utc)
