-- The read path: views in schema api are all the REST API, Grafana and the read-only role see.
-- Re-applied by every upgrade (CREATE OR REPLACE; new columns go at the end of a view).

CREATE OR REPLACE VIEW api.btc_primitive_10m AS
SELECT * FROM core.btc_primitive_10m;
COMMENT ON VIEW api.btc_primitive_10m IS 'The continuous 10m on-chain backbone (data contract: btc_primitive_10m).';

-- The 1h/24h backbone: the chain rollups with the price of the same period joined from the price rollups
-- (their close is the one close of the interval) and market_cap_usd = core.market_cap_usd(supply at the
-- period's end, that close). NULL prices where the period has none.
-- api fields of core.btc_primitive_1h by sql/aggregates/070_btc_primitive_1h_v3.sql: *
-- api fields of api.btc_primitive_1h by sql/aggregates/070_btc_primitive_1h_v3.sql: bucket_start_utc
-- api fields of api.btc_primitive_1h: market_cap_usd
CREATE OR REPLACE VIEW api.btc_primitive_1h AS
SELECT
    h.*,
    m.open_price_usd,
    m.high_price_usd,
    m.low_price_usd,
    m.close_price_usd,
    core.market_cap_usd(h.supply_total_sat, m.close_price_usd) AS market_cap_usd
FROM core.btc_primitive_1h AS h
LEFT JOIN core.mq_btc_price_1h AS m ON h.bucket_start_utc = m.bucket_start_utc;
COMMENT ON VIEW api.btc_primitive_1h IS 'Hourly rollup of btc_primitive_10m: flows summed, states of the last 10m bucket, means from summed parts; prices from mq_btc_price_1h.';

-- api fields of core.btc_primitive_24h by sql/aggregates/080_btc_primitive_24h_v3.sql: *
-- api fields of api.btc_primitive_24h by sql/aggregates/080_btc_primitive_24h_v3.sql: bucket_start_utc
-- api fields of api.btc_primitive_24h: market_cap_usd
CREATE OR REPLACE VIEW api.btc_primitive_24h AS
SELECT
    d.*,
    m.open_price_usd,
    m.high_price_usd,
    m.low_price_usd,
    m.close_price_usd,
    core.market_cap_usd(d.supply_total_sat, m.close_price_usd) AS market_cap_usd
FROM core.btc_primitive_24h AS d
LEFT JOIN core.mq_btc_price_24h AS m ON d.bucket_start_utc = m.bucket_start_utc;
COMMENT ON VIEW api.btc_primitive_24h IS 'Daily (UTC) rollup of btc_primitive_1h, same rules; prices from mq_btc_price_24h.';

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
    m.excluded_sources,
    m.contributing_sources,
    m.usd_rates
FROM core.mq_btc_price_10m AS m;
COMMENT ON VIEW api.btc_price_canonical_10m IS 'Canonical BTC/USD per 10m bucket; NULL prices with source_count 0 where no venue traded; provenance: contributing_sources (quote, usd_rate, weight, close, close_usd), excluded_sources (reason), usd_rates.';

-- api fields of core.mq_btc_price_1h by sql/aggregates/030_mq_btc_price_1h.sql: *
CREATE OR REPLACE VIEW api.btc_price_canonical_1h AS
SELECT * FROM core.mq_btc_price_1h;
COMMENT ON VIEW api.btc_price_canonical_1h IS 'Hourly rollup of the canonical price (open first, close last priced bucket).';

-- api fields of core.mq_btc_price_24h by sql/aggregates/040_mq_btc_price_24h.sql: *
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
-- The coin-age metric views are in 092_api_coin_age.sql (api.btc_supply_age_bands_24h has more columns
-- than its table: a SELECT * here would fail to replace it on the next upgrade). The per-block UTXO facts:
CREATE OR REPLACE VIEW api.btc_block_utxo_facts AS SELECT * FROM core.btc_block_utxo_facts;

-- api fields of api.metric_registry: chain
-- api fields of api.metric_registry by core.seed_metric_registry: interval
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
        AND c.component = core.checkpoint_component('metric', r.metric_name, r."interval")
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
    c.error_message,
    r.venue,
    r.base_currency,
    r.quote_currency
FROM core.mq_price_source_registry AS r
LEFT JOIN core.sync_checkpoints AS c
    ON c.chain = 'btc' AND c.component = core.checkpoint_component('price_source', r.source_name) AND c."interval" = '10m';
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

-- api fields of api.lane_status: lane, last_heartbeat, heartbeat_age_sec, stale
-- api fields of api.lane_status by core.lane_heartbeat: status, error_message
-- Lanes heartbeat into worker_<lane>:heartbeat; a lane is stale after core.lane_stale_after() without one.
CREATE OR REPLACE VIEW api.lane_status AS
SELECT
    substr(c.component, length(core.checkpoint_component('lane', '')) + 1) AS lane,
    c.status,
    c.error_message,
    c.updated_at AS last_heartbeat,
    round(extract(EPOCH FROM clock_timestamp() - c.updated_at)::numeric, 3) AS heartbeat_age_sec,
    clock_timestamp() - c.updated_at > core.lane_stale_after() AS stale
FROM core.sync_checkpoints AS c
WHERE c.chain = 'btc' AND c.component LIKE core.checkpoint_pattern('lane') AND c."interval" = 'heartbeat';
COMMENT ON VIEW api.lane_status IS 'Each lane''s last heartbeat and whether it is stale (older than core.lane_stale_after()).';

-- core.timescaledb_job_runs(): TimescaleDB's record of each job of this database (its own housekeeping jobs,
-- ids below 1000, left out): the compression/columnstore and continuous-aggregate refresh policies on
-- MQNODE's hypertables and caggs, and any job added with add_job; each with its latest error, and its
-- hypertable: the policy's, else the one its config names ({"hypertable": "core.x", ...}). No rows on
-- plain PostgreSQL: timescaledb_information is named only past the extension check, and PL/pgSQL resolves a
-- statement when it first runs (as core.refresh_rollup does with refresh_continuous_aggregate), so one
-- definition serves both engines. SECURITY DEFINER because timescaledb_information.job_errors shows a job's
-- errors only to its owner and the database owner, and the api views are read as mqnode_reader.
-- TimescaleDB's -infinity (no such event yet) becomes NULL.
CREATE OR REPLACE FUNCTION core.timescaledb_job_runs()
RETURNS TABLE (
    job_id integer,
    application_name text,
    proc_name text,
    hypertable text,
    job_status text,
    schedule_interval interval,
    initial_start timestamptz,
    last_run_started_at timestamptz,
    last_successful_finish timestamptz,
    last_run_status text,
    last_run_duration interval,
    next_start timestamptz,
    total_runs bigint,
    total_failures bigint,
    last_error_message text,
    last_error_sqlstate text,
    last_error_at timestamptz
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension AS x WHERE x.extname = 'timescaledb') THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT
        j.job_id,
        j.application_name::text,
        j.proc_name::text,
        coalesce(
            CASE WHEN j.hypertable_name IS NOT NULL THEN format('%I.%I', j.hypertable_schema, j.hypertable_name) END,
            j.config ->> 'hypertable'
        ),
        s.job_status,
        j.schedule_interval,
        j.initial_start,
        CASE WHEN isfinite(s.last_run_started_at) THEN s.last_run_started_at END,
        CASE WHEN isfinite(s.last_successful_finish) THEN s.last_successful_finish END,
        s.last_run_status,
        s.last_run_duration,
        CASE WHEN isfinite(s.next_start) THEN s.next_start END,
        s.total_runs,
        s.total_failures,
        e.err_message,
        e.sqlerrcode,
        e.error_at
    FROM timescaledb_information.jobs AS j
    LEFT JOIN timescaledb_information.job_stats AS s ON j.job_id = s.job_id
    LEFT JOIN LATERAL (
        SELECT
            h.err_message,
            h.sqlerrcode,
            coalesce(h.finish_time, h.start_time) AS error_at
        FROM timescaledb_information.job_errors AS h
        WHERE h.job_id = j.job_id
        ORDER BY h.start_time DESC
        LIMIT 1
    ) AS e ON true
    WHERE j.job_id >= 1000;
END
$$;
REVOKE ALL ON FUNCTION core.timescaledb_job_runs() FROM public;
GRANT EXECUTE ON FUNCTION core.timescaledb_job_runs() TO mqnode_reader;
COMMENT ON FUNCTION core.timescaledb_job_runs() IS
'TimescaleDB''s jobs of this database (ids >= 1000) with their run statistics and latest error; none on plain PostgreSQL.';

-- api fields of api.timescaledb_jobs by core.timescaledb_job_runs: *
-- api fields of api.timescaledb_jobs: health
-- One row per TimescaleDB job (none on plain PostgreSQL). health:
--   failing = its last run failed (last_error_message says why);
--   stale   = no successful finish within 2 x schedule_interval + 10 minutes; a job that never succeeded
--             counts from its initial_start, else from the server's start (the scheduler starts a job that
--             has never run at once), so a job that never ran although it should have is stale too;
--   ok      = otherwise (including a job not yet due to run for the first time).
CREATE OR REPLACE VIEW api.timescaledb_jobs AS
SELECT
    r.job_id,
    r.application_name,
    r.proc_name,
    r.hypertable,
    r.job_status,
    r.schedule_interval,
    r.last_run_started_at,
    r.last_successful_finish,
    r.last_run_status,
    r.last_run_duration,
    r.next_start,
    r.total_runs,
    r.total_failures,
    r.last_error_message,
    r.last_error_sqlstate,
    r.last_error_at,
    CASE
        WHEN r.last_run_status = 'Failed' THEN 'failing'
        WHEN
            coalesce(r.last_successful_finish, r.initial_start, pg_postmaster_start_time())
            < clock_timestamp() - (2 * r.schedule_interval + interval '10 minutes')
            THEN 'stale'
        ELSE 'ok'
    END AS health
FROM core.timescaledb_job_runs() AS r;
COMMENT ON VIEW api.timescaledb_jobs IS
'TimescaleDB policy and user jobs: last run, status, latest error, health (ok | failing | stale); no rows on plain PostgreSQL.';

-- api fields of api.btc_health: *
-- api.btc_health: one row, what /api/v1/btc/health reports.
CREATE OR REPLACE VIEW api.btc_health AS
WITH cp AS (
    SELECT
        max(c.last_height) FILTER (WHERE c.component = core.checkpoint_component('node_tip')) AS node_tip,
        max(c.updated_at) FILTER (WHERE c.component = core.checkpoint_component('node_tip')) AS node_tip_seen_at,
        max(c.last_height) FILTER (WHERE c.component = core.checkpoint_component('raw_blocks')) AS last_raw_height,
        max(c.last_height) FILTER (
            WHERE c.component = core.checkpoint_component('primitive_10m')
        ) AS last_primitive_height,
        max(c.last_bucket_time) FILTER (
            WHERE c.component = core.checkpoint_component('primitive_10m')
        ) AS last_primitive_bucket,
        max(c.last_bucket_time) FILTER (
            WHERE c.component = core.checkpoint_component('price_composer')
        ) AS last_canonical_price_bucket,
        max(c.last_bucket_time) FILTER (
            WHERE c.component = core.checkpoint_component('rollup', 'btc_primitive_1h')
        ) AS last_rollup_1h_bucket,
        max(c.last_bucket_time) FILTER (
            WHERE c.component = core.checkpoint_component('rollup', 'btc_primitive_24h')
        ) AS last_rollup_24h_bucket,
        min(c.last_bucket_time) FILTER (
            WHERE c.component LIKE core.checkpoint_pattern('metric') AND c."interval" = '10m'
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
),

-- NULL on plain PostgreSQL (no TimescaleDB: nothing to schedule), counts on TimescaleDB.
ts_jobs AS (
    SELECT
        exists(
            SELECT 1 FROM pg_extension AS x
            WHERE x.extname = 'timescaledb'
        ) AS installed,
        count(*) AS jobs_total,
        count(*) FILTER (WHERE j.health = 'failing') AS jobs_failing,
        count(*) FILTER (WHERE j.health = 'stale') AS jobs_stale,
        coalesce(jsonb_agg(jsonb_build_object(
            'job_id', j.job_id, 'job', j.application_name, 'hypertable', j.hypertable, 'health', j.health,
            'last_run_status', j.last_run_status, 'last_successful_finish', j.last_successful_finish,
            'error', j.last_error_message, 'error_at', j.last_error_at
        ) ORDER BY j.job_id) FILTER (WHERE j.health <> 'ok'), '[]') AS job_problems
    FROM api.timescaledb_jobs AS j
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
    END AS status,
    CASE WHEN t.installed THEN t.jobs_total END AS timescaledb_jobs_total,
    CASE WHEN t.installed THEN t.jobs_failing END AS timescaledb_jobs_failing,
    CASE WHEN t.installed THEN t.jobs_stale END AS timescaledb_jobs_stale,
    CASE WHEN t.installed THEN t.job_problems END AS timescaledb_job_problems
FROM cp
CROSS JOIN errors AS e
CROSS JOIN lanes AS l
CROSS JOIN ts_jobs AS t;
COMMENT ON VIEW api.btc_health IS
'One row: node tip, how far each stage got, lags and backlogs between stages, errors, stale lanes, TimescaleDB jobs.';

-- The read-only role sees the api schema and nothing else.
GRANT USAGE ON SCHEMA api TO mqnode_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA api TO mqnode_reader;
