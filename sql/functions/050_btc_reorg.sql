-- core.apply_btc_reorg(p_fork_height, p_new_tip_hash, p_detected_by)
-- Removes every block above the common ancestor p_fork_height (raw facts and primitives), records the
-- event in core.btc_reorg_events, moves the raw checkpoint back to the ancestor and the 10m builder
-- checkpoint to at most the ancestor, so the next build rewrites the timeline from the fork bucket.
-- Run in one transaction; the loader then ingests the winning branch from p_fork_height + 1.
-- Returns the reorg depth (0 when nothing was stored above the ancestor: nothing is recorded).
CREATE OR REPLACE FUNCTION core.apply_btc_reorg(
    p_fork_height bigint,
    p_new_tip_hash text,
    p_detected_by text
)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_old_tip record;
    v_fork record;
    v_orphans text[];
BEGIN
    SELECT b.height, b.block_hash INTO v_old_tip
    FROM raw.btc_blocks_raw AS b ORDER BY b.height DESC LIMIT 1;
    IF v_old_tip.height IS NULL OR v_old_tip.height <= p_fork_height THEN
        RETURN 0;
    END IF;

    SELECT b.block_hash, pb.bucket_start_utc INTO v_fork
    FROM raw.btc_blocks_raw AS b
    LEFT JOIN core.btc_primitive_block AS pb ON b.height = pb.height
    WHERE b.height = p_fork_height;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'apply_btc_reorg: common ancestor height % is not stored', p_fork_height;
    END IF;

    SELECT array_agg(b.block_hash ORDER BY b.height) INTO v_orphans
    FROM raw.btc_blocks_raw AS b WHERE b.height > p_fork_height;

    DELETE FROM raw.btc_tx_raw WHERE height > p_fork_height;
    DELETE FROM raw.btc_blocks_raw WHERE height > p_fork_height;
    DELETE FROM core.btc_primitive_block WHERE height > p_fork_height;
    DELETE FROM core.btc_block_fee_facts WHERE height > p_fork_height;
    -- Coin-age facts: a spend above the fork only spends outputs created at or below its own height.
    DELETE FROM core.btc_block_utxo_facts WHERE height > p_fork_height;
    DELETE FROM core.btc_block_spent_by_day WHERE spend_height > p_fork_height;
    DELETE FROM raw.btc_prevout_stage WHERE spend_height > p_fork_height;

    INSERT INTO core.btc_reorg_events (
        fork_height, fork_block_hash, fork_bucket_utc, old_tip_height, old_tip_hash, new_tip_hash,
        depth, orphaned_block_hashes, detected_by
    ) VALUES (
        p_fork_height, v_fork.block_hash, v_fork.bucket_start_utc, v_old_tip.height, v_old_tip.block_hash,
        p_new_tip_hash, cardinality(v_orphans), v_orphans, p_detected_by
    );

    UPDATE core.sync_checkpoints AS c
    SET last_height = p_fork_height, updated_at = clock_timestamp()
    WHERE c.chain = 'btc' AND c.component = core.checkpoint_component('raw_blocks') AND c."interval" = 'block'
      AND c.last_height > p_fork_height;
    PERFORM core.mark_primitive_10m_dirty(p_fork_height + 1);

    PERFORM pg_notify('btc_reorg', json_build_object(
        'fork_height', p_fork_height, 'depth', cardinality(v_orphans), 'new_tip_hash', p_new_tip_hash)::text);
    RETURN cardinality(v_orphans);
END
$$;
COMMENT ON FUNCTION core.apply_btc_reorg(bigint, text, text) IS 'Drop the orphaned blocks above a common ancestor, log the reorg and rewind the checkpoints.';
