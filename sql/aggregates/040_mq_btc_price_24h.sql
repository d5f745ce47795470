-- mq_btc_price_24h: days (UTC midnight) rolled up from mq_btc_price_1h (hierarchical). Same rules as
-- 030_mq_btc_price_1h.sql, recomputed from the hourly parts. Frozen.
SELECT
    time_bucket(INTERVAL '1 day', m.bucket_start_utc) AS bucket_start_utc,
    sum(m.bucket_count_10m)::INTEGER AS bucket_count_10m,
    sum(m.priced_bucket_count)::INTEGER AS priced_bucket_count,
    min(m.min_source_count) AS min_source_count,
    max(m.max_source_count) AS max_source_count,
    (array_agg(m.open_price_usd ORDER BY m.bucket_start_utc) FILTER (WHERE m.open_price_usd IS NOT NULL))[1]
        AS open_price_usd,
    max(m.high_price_usd) AS high_price_usd,
    min(m.low_price_usd) AS low_price_usd,
    (array_agg(m.close_price_usd ORDER BY m.bucket_start_utc DESC) FILTER (WHERE m.close_price_usd IS NOT NULL))[1]
        AS close_price_usd,
    sum(m.volume_btc) AS volume_btc,
    sum(m.volume_usd) AS volume_usd
FROM core.mq_btc_price_1h AS m
GROUP BY time_bucket(INTERVAL '1 day', m.bucket_start_utc)
