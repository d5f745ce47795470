-- The two ends of one loader batch (app/btc/writer.py runs them in one transaction with the rows).

-- core.begin_block_batch(p_from, p_to): clear every fact stored for heights p_from..p_to so the
-- batch can be written with plain COPY/INSERT. Re-ingesting a range therefore replaces it.
CREATE OR REPLACE FUNCTION core.begin_block_batch(p_from bigint, p_to bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    DELETE FROM raw.btc_tx_raw WHERE height BETWEEN p_from AND p_to;
    DELETE FROM raw.btc_blocks_raw WHERE height BETWEEN p_from AND p_to;
    DELETE FROM core.btc_primitive_block WHERE height BETWEEN p_from AND p_to;
    DELETE FROM core.btc_block_fee_facts WHERE height BETWEEN p_from AND p_to;
    -- UTXO / coin-age facts (025_btc_utxo_facts.sql) and any prevouts a failed batch left staged.
    DELETE FROM core.btc_block_utxo_facts WHERE height BETWEEN p_from AND p_to;
    DELETE FROM core.btc_block_spent_by_day WHERE spend_height BETWEEN p_from AND p_to;
    DELETE FROM raw.btc_prevout_stage WHERE spend_height BETWEEN p_from AND p_to;
END
$$;

-- core.finish_block_batch(p_from, p_to): after the loader wrote heights p_from..p_to
--   1. checks the batch: every height present, transaction rows = tx_count, each block's parent is
--      the stored block below it (SQLSTATE MQ001 'chain mismatch' otherwise: the node reorganised);
--   2. builds core.btc_primitive_block and core.btc_block_fee_facts for the range, then
--      core.btc_block_utxo_facts and core.btc_block_spent_by_day from the staged prevouts (emptied);
--   3. moves btc_raw_block_ingestion:block to the top of the contiguous run of stored heights;
--   4. marks the 10m builder dirty from p_from when it had already passed it (re-ingested range);
--   5. NOTIFY raw_block_ready (delivered when the transaction commits).
-- Returns the raw checkpoint height. Re-runnable for the same range.
CREATE OR REPLACE FUNCTION core.finish_block_batch(p_from bigint, p_to bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_missing bigint;
    v_bad_tx bigint;
    v_broken record;
    v_cp bigint;
    v_start bigint;
    v_new bigint;
BEGIN
    SELECT h INTO v_missing
    FROM generate_series(p_from, p_to) AS h
    WHERE NOT EXISTS (SELECT 1 FROM raw.btc_blocks_raw AS b WHERE b.height = h)
    LIMIT 1;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'block batch % .. % is missing height %', p_from, p_to, v_missing;
    END IF;

    SELECT b.height INTO v_bad_tx
    FROM raw.btc_blocks_raw AS b
    LEFT JOIN (
        SELECT t.height, count(*) AS n, min(t.tx_index) AS lo, max(t.tx_index) AS hi,
               count(*) FILTER (WHERE t.is_coinbase) AS coinbases,
               bool_or(t.is_coinbase AND t.tx_index <> 0) AS misplaced
        FROM raw.btc_tx_raw AS t
        WHERE t.height BETWEEN p_from AND p_to
        GROUP BY t.height
    ) AS c ON b.height = c.height
    WHERE b.height BETWEEN p_from AND p_to
      AND (c.n IS DISTINCT FROM b.tx_count::bigint OR c.lo <> 0 OR c.hi <> b.tx_count - 1
           OR c.coinbases <> 1 OR c.misplaced)
    LIMIT 1;
    IF v_bad_tx IS NOT NULL THEN
        RAISE EXCEPTION 'block % : transaction rows do not match its tx_count and coinbase layout', v_bad_tx;
    END IF;

    SELECT child.height, child.previous_block_hash, parent.block_hash INTO v_broken
    FROM raw.btc_blocks_raw AS child
    INNER JOIN raw.btc_blocks_raw AS parent ON child.height - 1 = parent.height
    WHERE child.height BETWEEN greatest(p_from, 1) AND p_to
      AND child.previous_block_hash IS DISTINCT FROM parent.block_hash
    ORDER BY child.height
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'MQ001',
            MESSAGE = format('chain mismatch at height %s: parent %s is not stored block %s',
                             v_broken.height, v_broken.previous_block_hash, v_broken.block_hash);
    END IF;

    PERFORM core.build_primitive_block(p_from, p_to);
    PERFORM core.build_block_utxo_facts(p_from, p_to);  -- after the primitives: it reads their event times

    SELECT c.last_height INTO v_cp
    FROM core.sync_checkpoints AS c
    WHERE c.chain = 'btc' AND c.component = core.checkpoint_component('raw_blocks') AND c."interval" = 'block'
    FOR UPDATE;
    v_start := coalesce(v_cp, (SELECT min(b.height) FROM raw.btc_blocks_raw AS b) - 1);
    SELECT coalesce(max(r.height), v_start) INTO v_new
    FROM (
        SELECT b.height, b.height - row_number() OVER (ORDER BY b.height) AS grp
        FROM raw.btc_blocks_raw AS b
        WHERE b.height > v_start
    ) AS r
    WHERE r.grp = v_start;
    PERFORM core.set_checkpoint('btc', core.checkpoint_component('raw_blocks'), 'block', v_new, NULL, 'ok');

    PERFORM core.mark_primitive_10m_dirty(p_from);

    PERFORM pg_notify('raw_block_ready', json_build_object(
        'from_height', p_from, 'to_height', p_to, 'checkpoint_height', v_new)::text);
    RETURN v_new;
END
$$;
COMMENT ON FUNCTION core.finish_block_batch(bigint, bigint) IS 'Validate a written block batch, build its primitives, advance the raw checkpoint and notify raw_block_ready.';
