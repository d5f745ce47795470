-- Compression that follows the pipeline, not the wall clock (TimescaleDB only; harmless elsewhere).
--
-- TimescaleDB's own compression policy compresses chunks older than now() - compress_after. A sync
-- writes years-old buckets (a mainnet backfill starts in 2009), so that policy would compress the very
-- chunks the builders are writing: their UPSERTs then race compress_chunk for the chunk's locks (seen on
-- the real server as deadlocks between the composer's UPDATE and the policy job). These chunks are only
-- settled once the pipeline has moved on. Revision 0005 replaces the time-partitioned tables' policies
-- with a job running core.compress_settled_chunks. Correctness never depends on it: compressed chunks
-- accept UPDATE/DELETE/ON CONFLICT, so a rewind (reorg, late venue rows) rewrites them as it would any.

-- core.compress_settled_chunks(job_id, config): a TimescaleDB job procedure. config:
--   hypertable            the time-partitioned hypertable, e.g. "core.btc_primitive_10m"
--   keep                  how far behind the frontier a chunk must end to be compressed, e.g. "180 days"
--   frontier_checkpoints  LIKE patterns of "component:interval" checkpoints whose last_bucket_time the
--                         writers of the table have reached, e.g. ["btc_primitive_10m_builder:10m"]
-- Frontier = the least of the table's newest time and those checkpoints (the slowest writer). Every
-- uncompressed chunk whose range ends at or before frontier - keep is compressed, one per transaction.
-- Re-runnable; does nothing on an empty table, or while another run works on the same hypertable.
CREATE OR REPLACE PROCEDURE core.compress_settled_chunks(job_id integer, config jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
    v_table regclass := (config ->> 'hypertable')::regclass;
    v_keep interval := (config ->> 'keep')::interval;
    v_time_column text;
    v_newest timestamptz;
    v_frontier timestamptz;
    v_chunk record;
BEGIN
    SELECT d.column_name INTO v_time_column
    FROM timescaledb_information.dimensions AS d
    WHERE format('%I.%I', d.hypertable_schema, d.hypertable_name)::regclass = v_table
      AND d.dimension_number = 1;
    IF v_time_column IS NULL THEN
        RAISE EXCEPTION 'compress_settled_chunks: % is not a hypertable', v_table;
    END IF;
    EXECUTE format('SELECT max(%I) FROM %s', v_time_column, v_table) INTO v_newest;
    SELECT least(v_newest, min(c.last_bucket_time)) INTO v_frontier
    FROM core.sync_checkpoints AS c
    WHERE c.chain = 'btc'
      AND c.component || ':' || c."interval" LIKE ANY (
          ARRAY(SELECT jsonb_array_elements_text(coalesce(config -> 'frontier_checkpoints', '[]')))
      );
    IF v_frontier IS NULL THEN
        RETURN;
    END IF;
    -- One run per hypertable at a time: a run started by hand beside the scheduled one would take the
    -- same chunk's locks in the other order (deadlock); the second run leaves the work to the first.
    IF NOT pg_try_advisory_lock(hashtext('core.compress_settled_chunks'), v_table::oid::integer) THEN
        RETURN;
    END IF;
    FOR v_chunk IN
        SELECT format('%I.%I', ch.chunk_schema, ch.chunk_name) AS chunk
        FROM timescaledb_information.chunks AS ch
        WHERE format('%I.%I', ch.hypertable_schema, ch.hypertable_name)::regclass = v_table
          AND NOT ch.is_compressed
          AND ch.range_end <= v_frontier - v_keep
        ORDER BY ch.range_start
    LOOP
        PERFORM compress_chunk(v_chunk.chunk::regclass, if_not_compressed => TRUE);
        COMMIT;
    END LOOP;
    PERFORM pg_advisory_unlock(hashtext('core.compress_settled_chunks'), v_table::oid::integer);
END
$$;
COMMENT ON PROCEDURE core.compress_settled_chunks(integer, jsonb) IS  -- noqa: LT01
'TimescaleDB job: compress the chunks of a hypertable that end keep before the slowest writer''s checkpoint.';
