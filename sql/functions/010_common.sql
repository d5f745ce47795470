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
