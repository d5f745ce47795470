-- The read path: views in schema api are all the REST API, Grafana and the read-only role see.
-- Re-applied by every upgrade (CREATE OR REPLACE; new columns go at the end of a view).

CREATE OR REPLACE VIEW api.btc_primitive_10m AS
SELECT * FROM core.btc_primitive_10m;
COMMENT ON VIEW api.btc_primitive_10m IS 'The continuous 10m on-chain backbone (data contract: btc_primitive_10m).';

CREATE OR REPLACE VIEW api.btc_primitive_1h AS
SELECT * FROM core.btc_primitive_1h;
COMMENT ON VIEW api.btc_primitive_1h IS 'Hourly rollup of btc_primitive_10m: flows summed, states of the last 10m bucket, means from summed parts.';

CREATE OR REPLACE VIEW api.btc_primitive_24h AS
SELECT * FROM core.btc_primitive_24h;
COMMENT ON VIEW api.btc_primitive_24h IS 'Daily (UTC) rollup of btc_primitive_1h, same rules.';

CREATE OR REPLACE VIEW api.btc_price_canonical_10m AS
SELECT
    m.bucket_start_utc,
    m.source_count,
    m.source_names,
    m.composition_method,
    m.open_price_usd,
    m.high_price_usd,
    m.low_price_usd,
    m.close_price_usd,
    m.volume_btc,
    m.volume_usd,
    m.excluded_sources
FROM core.mq_btc_price_10m AS m;
COMMENT ON VIEW api.btc_price_canonical_10m IS 'Canonical BTC/USD per 10m bucket; NULL prices with source_count 0 where no venue traded.';

CREATE OR REPLACE VIEW api.btc_price_canonical_1h AS
SELECT * FROM core.mq_btc_price_1h;
COMMENT ON VIEW api.btc_price_canonical_1h IS 'Hourly rollup of the canonical price (open first, close last priced bucket).';

CREATE OR REPLACE VIEW api.btc_price_canonical_24h AS
SELECT * FROM core.mq_btc_price_24h;
COMMENT ON VIEW api.btc_price_canonical_24h IS 'Daily (UTC) rollup of the canonical price.';

CREATE OR REPLACE VIEW api.btc_price_venue_10m AS
SELECT
    v.venue,
    v.bucket_start_utc,
    v.symbol,
    v.open_price_usd,
    v.high_price_usd,
    v.low_price_usd,
    v.close_price_usd,
    v.volume_btc,
    v.volume_usd,
    v.trade_count,
    v.source_updated_at,
    v.quality_status,
    v.data_source_mode,
    v.expected_child_candle_count,
    v.actual_child_candle_count,
    v.first_receive_time,
    v.last_receive_time,
    v.disconnect_count,
    v.gap_count
FROM core.venue_price_10m AS v;
COMMENT ON VIEW api.btc_price_venue_10m IS 'Sparse venue 10m OHLCV with quality metadata, all six venues (raw payloads stay in core).';

-- One view per metric table (the registry's output_table names them).
CREATE OR REPLACE VIEW api.btc_market_cap_10m AS SELECT * FROM core.btc_market_cap_10m;
CREATE OR REPLACE VIEW api.btc_market_cap_1h AS SELECT * FROM core.btc_market_cap_1h;
CREATE OR REPLACE VIEW api.btc_market_cap_24h AS SELECT * FROM core.btc_market_cap_24h;
CREATE OR REPLACE VIEW api.btc_nvt_10m AS SELECT * FROM core.btc_nvt_10m;
CREATE OR REPLACE VIEW api.btc_nvt_1h AS SELECT * FROM core.btc_nvt_1h;
CREATE OR REPLACE VIEW api.btc_nvt_24h AS SELECT * FROM core.btc_nvt_24h;
CREATE OR REPLACE VIEW api.btc_miner_revenue_10m AS SELECT * FROM core.btc_miner_revenue_10m;
CREATE OR REPLACE VIEW api.btc_miner_revenue_1h AS SELECT * FROM core.btc_miner_revenue_1h;
CREATE OR REPLACE VIEW api.btc_miner_revenue_24h AS SELECT * FROM core.btc_miner_revenue_24h;
CREATE OR REPLACE VIEW api.btc_fee_metrics_10m AS SELECT * FROM core.btc_fee_metrics_10m;
CREATE OR REPLACE VIEW api.btc_fee_metrics_1h AS SELECT * FROM core.btc_fee_metrics_1h;
CREATE OR REPLACE VIEW api.btc_fee_metrics_24h AS SELECT * FROM core.btc_fee_metrics_24h;
CREATE OR REPLACE VIEW api.btc_hash_rate_10m AS SELECT * FROM core.btc_hash_rate_10m;
CREATE OR REPLACE VIEW api.btc_hash_rate_1h AS SELECT * FROM core.btc_hash_rate_1h;
CREATE OR REPLACE VIEW api.btc_hash_rate_24h AS SELECT * FROM core.btc_hash_rate_24h;

CREATE OR REPLACE VIEW api.metric_registry AS
SELECT
    r.metric_name,
    r.chain,
    r.factor,
    r."interval",
    r.sql_function,
    r.output_table,
    r.enabled,
    r.version,
    r.dependencies,
    r.description,
    r.updated_at,
    c.last_bucket_time,
    c.status,
    c.error_message
FROM core.metric_registry AS r
LEFT JOIN core.sync_checkpoints AS c
    ON
        r.chain = c.chain
        AND c.component = format('btc_metric_%s_%s', r.metric_name, r."interval")
        AND r."interval" = c."interval";
COMMENT ON VIEW api.metric_registry IS 'Registered metrics with the progress and state of each.';

CREATE OR REPLACE VIEW api.price_source_registry AS
SELECT
    r.source_name,
    r.market_type,
    r.symbol,
    r.config_json,
    r.priority_rank,
    r.enabled,
    r.updated_at,
    c.last_bucket_time,
    c.status,
    c.error_message
FROM core.mq_price_source_registry AS r
LEFT JOIN core.sync_checkpoints AS c
    ON c.chain = 'btc' AND c.component = 'btc_price_source_' || r.source_name AND c."interval" = '10m';
COMMENT ON VIEW api.price_source_registry IS 'Price venues, how they are fetched, and the progress of each.';

CREATE OR REPLACE VIEW api.checkpoints AS
SELECT
    c.chain,
    c.component,
    c."interval",
    c.last_height,
    c.last_bucket_time,
    c.status,
    c.error_message,
    c.updated_at
FROM core.sync_checkpoints AS c;
COMMENT ON VIEW api.checkpoints IS 'Every stage''s progress (chain, component, interval).';

-- Lanes heartbeat into worker_<lane>:heartbeat; a lane is stale after two minutes without one.
CREATE OR REPLACE VIEW api.lane_status AS
SELECT
    substr(c.component, 8) AS lane,
    c.status,
    c.error_message,
    c.updated_at AS last_heartbeat,
    round(extract(EPOCH FROM clock_timestamp() - c.updated_at)::numeric, 3) AS heartbeat_age_sec,
    clock_timestamp() - c.updated_at > interval '2 minutes' AS stale
FROM core.sync_checkpoints AS c
WHERE c.chain = 'btc' AND c.component LIKE 'worker\_%' AND c."interval" = 'heartbeat';
COMMENT ON VIEW api.lane_status IS 'Each lane''s last heartbeat and whether it is stale (> 2 minutes).';

-- api.btc_health: one row, what /api/v1/btc/health reports.
CREATE OR REPLACE VIEW api.btc_health AS
WITH cp AS (
    SELECT
        max(c.last_height) FILTER (WHERE c.component = 'btc_node_tip') AS node_tip,
        max(c.updated_at) FILTER (WHERE c.component = 'btc_node_tip') AS node_tip_seen_at,
        max(c.last_height) FILTER (WHERE c.component = 'btc_raw_block_ingestion') AS last_raw_height,
        max(c.last_height) FILTER (WHERE c.component = 'btc_primitive_10m_builder') AS last_primitive_height,
        max(c.last_bucket_time) FILTER (WHERE c.component = 'btc_primitive_10m_builder') AS last_primitive_bucket,
        max(c.last_bucket_time) FILTER (
            WHERE c.component = 'btc_price_canonical_composer'
        ) AS last_canonical_price_bucket,
        max(c.last_bucket_time) FILTER (WHERE c.component = 'rollup_btc_primitive_1h') AS last_rollup_1h_bucket,
        max(c.last_bucket_time) FILTER (WHERE c.component = 'rollup_btc_primitive_24h') AS last_rollup_24h_bucket,
        min(c.last_bucket_time) FILTER (
            WHERE c.component LIKE 'btc\_metric\_%' AND c."interval" = '10m'
        ) AS oldest_metric_10m_bucket
    FROM core.sync_checkpoints AS c
    WHERE c.chain = 'btc'
),

errors AS (
    SELECT
        coalesce(jsonb_agg(jsonb_build_object(
            'component', c.component, 'interval', c."interval", 'error', c.error_message, 'since', c.updated_at
        ) ORDER BY c.component, c."interval"), '[]') AS checkpoints_in_error
    FROM core.sync_checkpoints AS c
    WHERE c.status = 'error'
),

lanes AS (
    SELECT
        coalesce(jsonb_agg(jsonb_build_object(
            'lane', l.lane, 'status', l.status, 'last_heartbeat', l.last_heartbeat,
            'heartbeat_age_sec', l.heartbeat_age_sec, 'stale', l.stale, 'error', l.error_message
        ) ORDER BY l.lane), '[]') AS lanes,
        coalesce(jsonb_agg(l.lane ORDER BY l.lane) FILTER (WHERE l.stale), '[]') AS stale_lanes
    FROM api.lane_status AS l
)

SELECT
    cp.node_tip,
    cp.node_tip_seen_at,
    cp.last_raw_height,
    cp.last_primitive_height,
    cp.last_primitive_bucket,
    cp.last_canonical_price_bucket,
    (
        SELECT max(m.bucket_start_utc) FROM core.mq_btc_price_10m AS m
        WHERE m.close_price_usd IS NOT NULL
    ) AS last_priced_bucket,
    cp.node_tip - cp.last_raw_height AS raw_lag_blocks,
    cp.last_raw_height - cp.last_primitive_height AS primitive_backlog_blocks,
    round(extract(EPOCH FROM (
        date_bin(interval '10 minutes', clock_timestamp(), timestamptz '2000-01-03 00:00:00+00')
        - cp.last_primitive_bucket
    ))::numeric, 0)::bigint AS primitive_lag_sec,
    (extract(EPOCH FROM (cp.last_primitive_bucket - cp.last_canonical_price_bucket)) / 600)::bigint
        AS price_backlog_buckets,
    (extract(EPOCH FROM (cp.last_primitive_bucket - cp.oldest_metric_10m_bucket)) / 600)::bigint
        AS metric_backlog_buckets,
    cp.last_rollup_1h_bucket,
    cp.last_rollup_24h_bucket,
    e.checkpoints_in_error,
    l.lanes,
    l.stale_lanes,
    CASE
        WHEN cp.last_raw_height IS NULL THEN 'starting'
        WHEN jsonb_array_length(e.checkpoints_in_error) > 0 OR jsonb_array_length(l.stale_lanes) > 0 THEN 'degraded'
        ELSE 'ok'
    END AS status
FROM cp
CROSS JOIN errors AS e
CROSS JOIN lanes AS l;
COMMENT ON VIEW api.btc_health IS 'One row: node tip, how far each stage got, lags and backlogs between stages, errors and stale lanes.';

-- The read-only role sees the api schema and nothing else.
GRANT USAGE ON SCHEMA api TO mqnode_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA api TO mqnode_reader;
