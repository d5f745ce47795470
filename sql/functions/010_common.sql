-- Shared building blocks: bucket alignment, the subsidy schedule and checkpoint bookkeeping.
-- CREATE OR REPLACE: re-applied by every `alembic upgrade` (alembic/env.py).

-- core.bucket_10m: the 10-minute bucket [b, b + 10 min) that contains ts, named by its start b.
-- Same alignment as TimescaleDB's time_bucket('10 minutes', ts) (origin 2000-01-03 00:00 UTC).
-- Pure; safe anywhere.
CREATE OR REPLACE FUNCTION core.bucket_10m(ts timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT date_bin(INTERVAL '10 minutes', ts, TIMESTAMPTZ '2000-01-03 00:00:00+00')
$$;
COMMENT ON FUNCTION core.bucket_10m(timestamptz) IS '10-minute bucket start of a timestamp (UTC, aligned to :00, :10, ...).';

-- core.btc_halving_interval: blocks between subsidy halvings on a network named as Bitcoin Core's
-- getblockchaininfo.chain names it (Core's consensus parameters): 150 on regtest, 210,000 on main, test,
-- testnet4 and signet. The one place the interval is decided. An unknown name raises SQLSTATE MQ002. Pure.
CREATE OR REPLACE FUNCTION core.btc_halving_interval(p_chain text)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_chain IN ('main', 'test', 'testnet4', 'signet') THEN
        RETURN 210000;
    ELSIF p_chain = 'regtest' THEN
        RETURN 150;
    END IF;
    RAISE EXCEPTION 'unknown chain %: expected one of main, test, testnet4, signet, regtest', quote_nullable(p_chain)
        USING ERRCODE = 'MQ002';
END
$$;
COMMENT ON FUNCTION core.btc_halving_interval(text) IS 'Halving interval in blocks of a network (by Core''s name).';

-- core.set_chain: record the network the loader syncs from (called when it starts syncing, before it
-- writes blocks). The same chain again: nothing changes. Another chain while the database holds blocks
-- (raw, per-block or 10m rows; with no chain recorded they are mainnet's): SQLSTATE MQ003 naming both,
-- nothing is written. With no blocks stored the record is replaced. Returns the chain.
CREATE OR REPLACE FUNCTION core.set_chain(p_chain text)
RETURNS text
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_interval integer := core.btc_halving_interval(p_chain);
    v_stored text;
BEGIN
    LOCK TABLE core.chain_params IN SHARE ROW EXCLUSIVE MODE;  -- two loaders starting at once: one decides
    SELECT cp.chain INTO v_stored FROM core.chain_params AS cp;
    IF v_stored = p_chain THEN
        RETURN p_chain;
    END IF;
    IF coalesce(v_stored, 'main') <> p_chain
        AND (
            EXISTS (SELECT 1 FROM raw.btc_blocks_raw)
            OR EXISTS (SELECT 1 FROM core.btc_primitive_block)
            OR EXISTS (SELECT 1 FROM core.btc_primitive_10m)
        ) THEN
        RAISE EXCEPTION 'the database holds blocks of chain % but the node is on chain %',
            coalesce(v_stored, 'main (no chain recorded)'), p_chain
            USING ERRCODE = 'MQ003',
            HINT = 'point MQNODE_BTC_RPC_URL at a node of the stored chain, or use a new database for this one';
    END IF;
    INSERT INTO core.chain_params AS cp (singleton, chain, halving_interval_blocks, recorded_at)
    VALUES (true, p_chain, v_interval, clock_timestamp())
    ON CONFLICT (singleton) DO UPDATE
    SET chain = excluded.chain,
        halving_interval_blocks = excluded.halving_interval_blocks,
        recorded_at = excluded.recorded_at;
    RETURN p_chain;
END
$$;

-- core.btc_halving_epoch: how many halvings precede a height on the recorded chain (mainnet when none
-- is recorded): height / its halving interval. Stable (reads core.chain_params).
CREATE OR REPLACE FUNCTION core.btc_halving_epoch(p_height bigint)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT (
        p_height / coalesce(
            (SELECT cp.halving_interval_blocks FROM core.chain_params AS cp), core.btc_halving_interval('main')
        )
    )::integer
$$;
COMMENT ON FUNCTION core.btc_halving_epoch(bigint) IS 'Halvings before a height on the recorded chain.';

-- core.btc_max_subsidy_sat: the largest coinbase subsidy consensus allows at a height on the recorded
-- chain: 50 BTC halved every halving interval, 0 from the 64th halving on. Stable.
CREATE OR REPLACE FUNCTION core.btc_max_subsidy_sat(p_height bigint)
RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN e.epoch >= 64 THEN 0::bigint
        ELSE 5000000000::bigint >> e.epoch
    END
    FROM (SELECT core.btc_halving_epoch(p_height) AS epoch) AS e
$$;
COMMENT ON FUNCTION core.btc_max_subsidy_sat(bigint) IS 'Maximum block subsidy in satoshis at a height.';

-- core.checkpoint_keys(): every checkpoint key of core.sync_checkpoints, the one list (app/checkpoints.py
-- holds the same; tests/test_checkpoint_keys.py compares them and finds no key spelled out elsewhere).
-- stage: the name SQL and Python use; a family (price_source, rollup, metric, lane) has one checkpoint per
-- member: component is a format() pattern filled with the member's names, "interval" NULL = the member's.
CREATE OR REPLACE FUNCTION core.checkpoint_keys()
RETURNS TABLE (stage text, chain text, component text, "interval" text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    VALUES
    ('node_tip', 'btc', 'btc_node_tip', 'block'),
    ('raw_blocks', 'btc', 'btc_raw_block_ingestion', 'block'),
    ('primitive_10m', 'btc', 'btc_primitive_10m_builder', '10m'),
    ('price_composer', 'btc', 'btc_price_canonical_composer', '10m'),
    ('price_source', 'btc', 'btc_price_source_%s', '10m'),  -- %s: the registry's source_name
    ('rollup', 'btc', 'rollup_%s', NULL),  -- %s: rollup_name; the rollup's interval
    ('metric', 'btc', 'btc_metric_%s_%s', NULL),  -- %s: metric_name, interval; that interval
    ('lane', 'btc', 'worker_%s', 'heartbeat')  -- %s: the lane
$$;

-- core.checkpoint_component(p_stage, names...): the component of a stage's checkpoint, a family's member
-- named by its names (core.checkpoint_component('metric', 'nvt_raw', '10m') = 'btc_metric_nvt_raw_10m').
-- An unknown stage or the wrong number of names raises (SQLSTATE 22023): a key cannot be mistyped. Pure.
CREATE OR REPLACE FUNCTION core.checkpoint_component(p_stage text, VARIADIC p_names text[] DEFAULT '{}')
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pattern text;
BEGIN
    SELECT k.component INTO v_pattern FROM core.checkpoint_keys() AS k WHERE k.stage = p_stage;
    IF v_pattern IS NULL
        OR (length(v_pattern) - length(replace(v_pattern, '%s', ''))) / 2 <> coalesce(cardinality(p_names), 0) THEN
        RAISE EXCEPTION 'checkpoint % with names % is not in core.checkpoint_keys()', p_stage, p_names
            USING ERRCODE = '22023';
    END IF;
    RETURN format(v_pattern, VARIADIC p_names);
END
$$;

-- core.checkpoint_pattern(p_stage): a LIKE pattern matching the component of every member of a family
-- (core.checkpoint_pattern('metric') = 'btc\_metric\_%\_%'), for rewinds and listings. Pure.
CREATE OR REPLACE FUNCTION core.checkpoint_pattern(p_stage text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT replace(replace(k.component, '_', '\_'), '%s', '%') FROM core.checkpoint_keys() AS k WHERE k.stage = p_stage
$$;

-- api fields of core.sync_checkpoints: *
-- core.set_checkpoint: upsert one checkpoint with its new position, status ok (a checkpoint is ok or
-- error: core.checkpoint_error).
-- Call it inside the transaction of the write it describes. Re-runnable.
CREATE OR REPLACE FUNCTION core.set_checkpoint(
    p_chain text,
    p_component text,
    p_interval text,
    p_last_height bigint,
    p_last_bucket_time timestamptz,
    p_status text DEFAULT 'ok'
)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    INSERT INTO core.sync_checkpoints AS c
        (chain, component, "interval", last_height, last_bucket_time, status, error_message, updated_at)
    VALUES (p_chain, p_component, p_interval, p_last_height, p_last_bucket_time, p_status, NULL, clock_timestamp())
    ON CONFLICT (chain, component, "interval") DO UPDATE
    SET last_height = excluded.last_height,
        last_bucket_time = excluded.last_bucket_time,
        status = excluded.status,
        error_message = NULL,
        updated_at = excluded.updated_at
$$;

-- api fields of core.sync_checkpoints: error_message
-- core.checkpoint_error: mark a checkpoint as failed with a message, keeping its position
-- (the last safe height/bucket). Run it in its own transaction after the failed one rolled back.
CREATE OR REPLACE FUNCTION core.checkpoint_error(
    p_chain text, p_component text, p_interval text, p_message text
)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    INSERT INTO core.sync_checkpoints AS c
        (chain, component, "interval", status, error_message, updated_at)
    VALUES (p_chain, p_component, p_interval, 'error', left(p_message, 2000), clock_timestamp())
    ON CONFLICT (chain, component, "interval") DO UPDATE
    SET status = 'error', error_message = excluded.error_message, updated_at = excluded.updated_at
$$;

-- core.checkpoint_ok: clear an error once the stage works again, keeping its position.
CREATE OR REPLACE FUNCTION core.checkpoint_ok(p_chain text, p_component text, p_interval text)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    UPDATE core.sync_checkpoints
    SET status = 'ok', error_message = NULL, updated_at = clock_timestamp()
    WHERE chain = p_chain AND component = p_component AND "interval" = p_interval AND status <> 'ok'
$$;

-- core.rewind_checkpoints(p_components, p_bucket): the rows of every bucket from p_bucket on changed
-- upstream, so the named downstream stages (LIKE patterns on component) must redo them: their
-- last_bucket_time moves back to p_bucket where it is later. Call it in the transaction of the
-- upstream write. Stages lock their own checkpoint row while they run, so a rewind that arrives
-- meanwhile waits and is applied to the position they commit, never lost.
CREATE OR REPLACE FUNCTION core.rewind_checkpoints(p_components text[], p_bucket timestamptz)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    UPDATE core.sync_checkpoints AS c
    SET last_bucket_time = p_bucket, updated_at = clock_timestamp()
    WHERE c.chain = 'btc' AND c.component LIKE ANY (p_components) AND c.last_bucket_time > p_bucket
$$;

-- core.period_width(p_interval): '10m' | '1h' | '24h' as an interval; an error for anything else.
CREATE OR REPLACE FUNCTION core.period_width(p_interval text)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_interval IS NULL OR p_interval NOT IN ('10m', '1h', '24h') THEN
        RAISE EXCEPTION 'unknown interval %, expected 10m, 1h or 24h', p_interval USING ERRCODE = '22023';
    END IF;
    RETURN CASE p_interval
        WHEN '10m' THEN INTERVAL '10 minutes'
        WHEN '1h' THEN INTERVAL '1 hour'
        WHEN '24h' THEN INTERVAL '1 day'
    END;
END
$$;

-- core.period_start(p_interval, ts): start of the 10m / 1h / 24h period containing ts (UTC, the
-- alignment of time_bucket). Pure.
CREATE OR REPLACE FUNCTION core.period_start(p_interval text, ts timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT date_bin(core.period_width(p_interval), ts, TIMESTAMPTZ '2000-01-03 00:00:00+00')
$$;

-- core.lane_heartbeat_interval(): how often a lane heartbeats (after each step, between the units of a long
-- step and while it sleeps; app/lanes.py reads it at its first beat). The one definition. Pure.
CREATE OR REPLACE FUNCTION core.lane_heartbeat_interval()
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT INTERVAL '20 seconds'
$$;

-- core.lane_stale_after(): a lane without a heartbeat for longer is stale (api.lane_status): six missed
-- heartbeats. Pure. SECURITY DEFINER (as the checkpoint key functions below): the api views call it as
-- mqnode_reader, which may not name anything in schema core.
CREATE OR REPLACE FUNCTION core.lane_stale_after()
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 6 * core.lane_heartbeat_interval()
$$;

-- core.lane_heartbeat(p_lane, p_error): a lane is alive; worker_<lane>:heartbeat gets the time and
-- whether its last step failed (status error with the message) or not. Lanes call it after each step.
CREATE OR REPLACE FUNCTION core.lane_heartbeat(p_lane text, p_error text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    INSERT INTO core.sync_checkpoints AS c (chain, component, "interval", status, error_message, updated_at)
    VALUES (
        'btc', core.checkpoint_component('lane', p_lane), 'heartbeat', CASE WHEN p_error IS NULL THEN 'ok' ELSE 'error' END,
        left(p_error, 2000), clock_timestamp()
    )
    ON CONFLICT (chain, component, "interval") DO UPDATE
    SET status = excluded.status, error_message = excluded.error_message, updated_at = excluded.updated_at
$$;

-- core.sat_to_usd(p_sat, p_price_usd): a satoshi amount valued at a BTC/USD price, 8 decimals; NULL
-- when either is NULL (no price: no USD value, never 0). Pure; inlined by the planner.
CREATE OR REPLACE FUNCTION core.sat_to_usd(p_sat numeric, p_price_usd numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT round(p_sat / 100000000 * p_price_usd, 8)
$$;

-- core.share(p_part, p_whole): p_part / p_whole to 8 decimals; NULL when p_whole is not positive (an
-- undefined ratio stays NULL, never a fake 0). Pure; inlined by the planner.
CREATE OR REPLACE FUNCTION core.share(p_part numeric, p_whole numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_whole > 0 THEN round(p_part / p_whole, 8) END
$$;

-- One definition per formula (each used wherever the formula appears; pure, inlined by the planner):

-- core.market_cap_usd(p_supply_sat, p_close_usd): market capitalisation = supply / 1e8 x the period's
-- canonical close, 8 decimals (the valuation of core.sat_to_usd); NULL without a close (or a supply).
-- Every market_cap_usd is this. Its body names nothing in schema core: the api views call it, and the
-- planner inlines it as the reading role (mqnode_reader has no access to schema core).
CREATE OR REPLACE FUNCTION core.market_cap_usd(p_supply_sat numeric, p_close_usd numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT round(p_supply_sat / 100000000 * p_close_usd, 8)
$$;

-- core.btc_tx_weight_wu(p_weight, p_size): a transaction's weight, 4 x size where the node gave none
-- (a pre-segwit node's transaction has no witness).
CREATE OR REPLACE FUNCTION core.btc_tx_weight_wu(p_weight bigint, p_size bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(p_weight, 4 * p_size)
$$;

-- core.btc_tx_vsize_vb(p_vsize, p_weight, p_size): a transaction's virtual size, ceil(weight / 4) where
-- the node gave none (weight by core.btc_tx_weight_wu).
CREATE OR REPLACE FUNCTION core.btc_tx_vsize_vb(p_vsize bigint, p_weight bigint, p_size bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(p_vsize, ceil(core.btc_tx_weight_wu(p_weight, p_size) / 4.0)::bigint)
$$;

-- core.exact_median(p_sorted): the exact median of an ascending array: the mean of its lower and upper
-- middle element (element ceil(n/2) and floor(n/2) + 1), unrounded; NULL for an empty or NULL array.
-- Aggregate callers pass array_agg(x ORDER BY x) FILTER (WHERE x IS NOT NULL).
CREATE OR REPLACE FUNCTION core.exact_median(p_sorted anyarray)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (p_sorted[(cardinality(p_sorted) + 1) / 2] + p_sorted[cardinality(p_sorted) / 2 + 1])::numeric / 2
$$;

-- core.btc_hashrate_hs(p_difficulty, p_seconds): the hash rate that finds blocks of that (summed)
-- difficulty in that many seconds: difficulty x 2^32 / seconds (H/s; a block of difficulty D takes
-- D x 2^32 hashes on average). Unrounded.
CREATE OR REPLACE FUNCTION core.btc_hashrate_hs(p_difficulty numeric, p_seconds numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p_difficulty * 4294967296 / p_seconds
$$;

-- core.epoch_ms(ts): milliseconds since 1970-01-01 UTC (a bucket's open_time_ms, as exchanges name
-- candle open times).
CREATE OR REPLACE FUNCTION core.epoch_ms(ts timestamptz)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (extract(EPOCH FROM ts) * 1000)::bigint
$$;
