-- mq_btc_price_1h: the canonical price rolled up to hours. Same engines and freezing as
-- 010_btc_primitive_1h.sql. Open of the first 10m bucket with a price, high = max, low = min, close of
-- the last bucket with a price, volumes summed; NULL prices when no bucket of the hour has one.
-- priced_bucket_count and the source counts tell how much of the hour the price covers.
SELECT
    time_bucket(INTERVAL '1 hour', m.bucket_start_utc) AS bucket_start_utc,
    count(*)::INTEGER AS bucket_count_10m,
    (count(*) FILTER (WHERE m.close_price_usd IS NOT NULL))::INTEGER AS priced_bucket_count,
    min(m.source_count) AS min_source_count,
    max(m.source_count) AS max_source_count,
    (array_agg(m.open_price_usd ORDER BY m.bucket_start_utc) FILTER (WHERE m.open_price_usd IS NOT NULL))[1]
        AS open_price_usd,
    max(m.high_price_usd) AS high_price_usd,
    min(m.low_price_usd) AS low_price_usd,
    (array_agg(m.close_price_usd ORDER BY m.bucket_start_utc DESC) FILTER (WHERE m.close_price_usd IS NOT NULL))[1]
        AS close_price_usd,
    sum(m.volume_btc) AS volume_btc,
    sum(m.volume_usd) AS volume_usd
FROM core.mq_btc_price_10m AS m
GROUP BY time_bucket(INTERVAL '1 hour', m.bucket_start_utc)
