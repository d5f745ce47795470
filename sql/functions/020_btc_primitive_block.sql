-- core.build_primitive_block(p_from, p_to)
-- Computes the reusable per-block facts of heights p_from..p_to from raw.btc_blocks_raw and
-- raw.btc_tx_raw and upserts them into core.btc_primitive_block; then carries the running supply
-- (cumulative_supply_sat) forward over any stored blocks directly above p_to.
-- Rules (docs: DATA-CONTRACT.md):
--   total_fee_sat  = sum of non-coinbase fees when every fee is known,
--                    else max(coinbase payout - max subsidy, 0)
--   issued_sat     = subsidy_sat = min(max(coinbase payout - total_fee_sat, 0), max subsidy)
--   The genesis coinbase never entered the UTXO set (Bitcoin Core cannot spend it, and its
--   gettxoutsetinfo and Coin Metrics' SplyCur leave it out), so height 0 issues nothing and
--   pays no miner revenue.
--   cumulative_supply_sat = running sum of issued_sat from genesis; NULL while a lower height is missing.
-- Safe to re-run over any range: rows are replaced by the same values.
CREATE OR REPLACE FUNCTION core.build_primitive_block(p_from bigint, p_to bigint)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_rows integer;
    v_base bigint;
    v_run_end bigint;
    v_last bigint;
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_from > p_to THEN
        RAISE EXCEPTION 'build_primitive_block: bad height range % .. %', p_from, p_to;
    END IF;

    -- Supply through p_from - 1; NULL (unknown) when that block is not stored.
    IF p_from = 0 THEN
        v_base := 0;
    ELSE
        SELECT pb.cumulative_supply_sat INTO v_base
        FROM core.btc_primitive_block AS pb WHERE pb.height = p_from - 1;
    END IF;

    INSERT INTO core.btc_primitive_block AS p (
        height, block_hash, block_time, median_time, event_time, bucket_start_utc,
        tx_count, non_coinbase_tx_count, input_count, output_count,
        total_out_sat, coinbase_out_sat, fees_known, total_fee_sat, max_subsidy_sat,
        subsidy_sat, issued_sat, miner_revenue_sat,
        block_size_bytes, block_weight_wu, block_vsize_vb, tx_size_total_bytes, tx_vsize_total_vb,
        avg_fee_sat, min_feerate_sat_vb, max_feerate_sat_vb,
        segwit_tx_count, sw_total_size_bytes, sw_total_weight_wu,
        difficulty, chainwork, cumulative_supply_sat
    )
    WITH tx AS (
        SELECT
            t.height,
            count(*)::integer AS tx_count,
            (count(*) FILTER (WHERE NOT t.is_coinbase))::integer AS non_coinbase_tx_count,
            coalesce(sum(t.input_count) FILTER (WHERE NOT t.is_coinbase), 0)::bigint AS input_count,
            sum(t.output_count)::bigint AS output_count,
            sum(t.output_value_sat)::bigint AS total_out_sat,
            coalesce(sum(t.output_value_sat) FILTER (WHERE t.is_coinbase), 0)::bigint AS coinbase_out_sat,
            count(t.fee_sat) = count(*) FILTER (WHERE NOT t.is_coinbase) AS fees_known,
            coalesce(sum(t.fee_sat), 0)::bigint AS known_fee_sat,
            sum(t.size)::bigint AS tx_size_total_bytes,
            sum(coalesce(t.vsize, ceil(coalesce(t.weight, 4 * t.size) / 4.0)))::bigint AS tx_vsize_total_vb,
            min(round(t.fee_sat::numeric / nullif(coalesce(t.vsize, ceil(coalesce(t.weight, 4 * t.size) / 4.0)), 0), 8))
                FILTER (WHERE NOT t.is_coinbase) AS min_feerate_sat_vb,
            max(round(t.fee_sat::numeric / nullif(coalesce(t.vsize, ceil(coalesce(t.weight, 4 * t.size) / 4.0)), 0), 8))
                FILTER (WHERE NOT t.is_coinbase) AS max_feerate_sat_vb,
            (count(*) FILTER (WHERE t.is_segwit AND NOT t.is_coinbase))::integer AS segwit_tx_count,
            coalesce(sum(t.size) FILTER (WHERE t.is_segwit AND NOT t.is_coinbase), 0)::bigint AS sw_total_size_bytes,
            coalesce(sum(coalesce(t.weight, 4 * t.size)) FILTER (WHERE t.is_segwit AND NOT t.is_coinbase), 0)::bigint
                AS sw_total_weight_wu
        FROM raw.btc_tx_raw AS t
        WHERE t.height BETWEEN p_from AND p_to
        GROUP BY t.height
    ),

    facts AS (
        SELECT
            b.*,
            tx.tx_count AS counted_tx,
            tx.non_coinbase_tx_count,
            tx.input_count,
            tx.output_count,
            tx.total_out_sat,
            tx.coinbase_out_sat,
            tx.fees_known,
            tx.known_fee_sat,
            tx.tx_size_total_bytes,
            tx.tx_vsize_total_vb,
            tx.min_feerate_sat_vb,
            tx.max_feerate_sat_vb,
            tx.segwit_tx_count,
            tx.sw_total_size_bytes,
            tx.sw_total_weight_wu,
            core.btc_max_subsidy_sat(b.height) AS max_subsidy_sat,
            coalesce(b.weight, 3 * b.stripped_size + b.size, 4 * b.size) AS weight_wu,
            CASE
                WHEN tx.fees_known THEN tx.known_fee_sat
                ELSE greatest(tx.coinbase_out_sat - core.btc_max_subsidy_sat(b.height), 0)
            END AS total_fee_sat
        FROM raw.btc_blocks_raw AS b
        INNER JOIN tx ON b.height = tx.height
        WHERE b.height BETWEEN p_from AND p_to
    ),

    issued AS (
        SELECT
            f.*,
            CASE
                WHEN f.height = 0 THEN 0::bigint
                ELSE least(greatest(f.coinbase_out_sat - f.total_fee_sat, 0), f.max_subsidy_sat)
            END AS issued_sat
        FROM facts AS f
    )

    SELECT
        i.height,
        i.block_hash,
        i.block_time,
        i.median_time,
        coalesce(i.median_time, i.block_time),
        core.bucket_10m(coalesce(i.median_time, i.block_time)),
        i.counted_tx,
        i.non_coinbase_tx_count,
        i.input_count,
        i.output_count,
        i.total_out_sat,
        i.coinbase_out_sat,
        i.fees_known,
        i.total_fee_sat,
        i.max_subsidy_sat,
        i.issued_sat,
        i.issued_sat,
        CASE WHEN i.height = 0 THEN 0 ELSE i.coinbase_out_sat END,
        i.size,
        i.weight_wu,
        ceil(i.weight_wu / 4.0)::integer,
        i.tx_size_total_bytes,
        i.tx_vsize_total_vb,
        CASE
            WHEN i.fees_known AND i.non_coinbase_tx_count > 0
                THEN round(i.total_fee_sat::numeric / i.non_coinbase_tx_count, 8)
        END,
        CASE WHEN i.fees_known THEN i.min_feerate_sat_vb END,
        CASE WHEN i.fees_known THEN i.max_feerate_sat_vb END,
        i.segwit_tx_count,
        i.sw_total_size_bytes,
        i.sw_total_weight_wu,
        i.difficulty,
        i.chainwork,
        v_base + sum(i.issued_sat) OVER (ORDER BY i.height)
    FROM issued AS i
    ON CONFLICT (height) DO UPDATE
    SET block_hash = excluded.block_hash,
        block_time = excluded.block_time,
        median_time = excluded.median_time,
        event_time = excluded.event_time,
        bucket_start_utc = excluded.bucket_start_utc,
        tx_count = excluded.tx_count,
        non_coinbase_tx_count = excluded.non_coinbase_tx_count,
        input_count = excluded.input_count,
        output_count = excluded.output_count,
        total_out_sat = excluded.total_out_sat,
        coinbase_out_sat = excluded.coinbase_out_sat,
        fees_known = excluded.fees_known,
        total_fee_sat = excluded.total_fee_sat,
        max_subsidy_sat = excluded.max_subsidy_sat,
        subsidy_sat = excluded.subsidy_sat,
        issued_sat = excluded.issued_sat,
        miner_revenue_sat = excluded.miner_revenue_sat,
        block_size_bytes = excluded.block_size_bytes,
        block_weight_wu = excluded.block_weight_wu,
        block_vsize_vb = excluded.block_vsize_vb,
        tx_size_total_bytes = excluded.tx_size_total_bytes,
        tx_vsize_total_vb = excluded.tx_vsize_total_vb,
        avg_fee_sat = excluded.avg_fee_sat,
        min_feerate_sat_vb = excluded.min_feerate_sat_vb,
        max_feerate_sat_vb = excluded.max_feerate_sat_vb,
        segwit_tx_count = excluded.segwit_tx_count,
        sw_total_size_bytes = excluded.sw_total_size_bytes,
        sw_total_weight_wu = excluded.sw_total_weight_wu,
        difficulty = excluded.difficulty,
        chainwork = excluded.chainwork,
        cumulative_supply_sat = excluded.cumulative_supply_sat;
    GET DIAGNOSTICS v_rows = ROW_COUNT;

    -- Blocks stored directly above p_to (a range filled below them): carry the supply through their run.
    SELECT max(r.height) INTO v_run_end
    FROM (
        SELECT pb.height, pb.height - row_number() OVER (ORDER BY pb.height) AS grp
        FROM core.btc_primitive_block AS pb
        WHERE pb.height > p_to
    ) AS r
    WHERE r.grp = p_to;

    IF v_run_end IS NOT NULL THEN
        SELECT pb.cumulative_supply_sat INTO v_last
        FROM core.btc_primitive_block AS pb WHERE pb.height = p_to;

        UPDATE core.btc_primitive_block AS p
        SET cumulative_supply_sat = s.cumulative_supply_sat
        FROM (
            SELECT pb.height, v_last + sum(pb.issued_sat) OVER (ORDER BY pb.height) AS cumulative_supply_sat
            FROM core.btc_primitive_block AS pb
            WHERE pb.height > p_to AND pb.height <= v_run_end
        ) AS s
        WHERE p.height = s.height AND p.cumulative_supply_sat IS DISTINCT FROM s.cumulative_supply_sat;
    END IF;

    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION core.build_primitive_block(bigint, bigint) IS 'Rebuild core.btc_primitive_block for a height range from the raw block and transaction facts (idempotent).';
COMMENT ON TABLE core.btc_primitive_block IS 'Reusable per-block facts (sums, fees with the coinbase fallback, issuance, running supply), built in SQL from raw facts.';
