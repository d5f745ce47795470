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

-- core.btc_max_subsidy_sat: the largest coinbase subsidy consensus allows at a height:
-- 50 BTC halved every 210,000 blocks, 0 from the 64th halving on. Pure.
CREATE OR REPLACE FUNCTION core.btc_max_subsidy_sat(p_height bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_height / 210000 >= 64 THEN 0::bigint
        ELSE 5000000000::bigint >> (p_height / 210000)::integer
    END
$$;
COMMENT ON FUNCTION core.btc_max_subsidy_sat(bigint) IS 'Maximum block subsidy in satoshis at a height.';

-- core.set_checkpoint: upsert one checkpoint as ok (status running/ok) with its new position.
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

-- core.lane_heartbeat(p_lane, p_error): a lane is alive; worker_<lane>:heartbeat gets the time and
-- whether its last step failed (status error with the message) or not. Lanes call it after each step.
CREATE OR REPLACE FUNCTION core.lane_heartbeat(p_lane text, p_error text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    INSERT INTO core.sync_checkpoints AS c (chain, component, "interval", status, error_message, updated_at)
    VALUES (
        'btc', 'worker_' || p_lane, 'heartbeat', CASE WHEN p_error IS NULL THEN 'ok' ELSE 'error' END,
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
