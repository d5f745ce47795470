-- core.btc_fee_stats(fees, feerates, core feerates, core weights): fee statistics of a set of fee
-- observations (non-coinbase transactions with a known fee), the one rule every block, 10m bucket, hour
-- and day uses (docs/data-contract.md "Fee statistics"), with n observations:
--   median_fee_sat         mean of the lower and upper middle fee (exact; Core's medianfee truncates it)
--   fee_pNN_sat            the fee at rank ceil(n x p) in ascending order, p = 1/10, 1/4, 3/4, 9/10 (Core's
--                          CalculatePercentilesByWeight with every transaction weighing 1)
--   median_feerate_sat_vb  mean of the lower and upper middle of round(fee / vsize, 8)
--   min/max_feerate_sat_vb min/max of round(fee / vsize, 8)
--   feerate_pNN_sat_vb     Bitcoin Core's getblockstats feerate_percentiles: feerates trunc(4 fee / weight)
--                          (integer sat/vB) in ascending order, each weighing its transaction's weight; the
--                          first feerate whose cumulative weight reaches the threshold total / 10, total / 4,
--                          total / 2, total x 3 / 4, total x 9 / 10 (double precision, as Core computes them;
--                          a threshold never reached takes the last feerate)
-- Inputs, each SORTED ASCENDING: fees in sat; feerates in units of 10^-8 sat/vB; Core feerates with the
-- weight paid at each, aligned (one pair per transaction or per distinct feerate; equal feerates may
-- repeat). core.build_block_fee_facts and core.btc_fee_stats_of_blocks pass them so. All NULL without
-- observations. Immutable; reads no table.
CREATE OR REPLACE FUNCTION core.btc_fee_stats(
    p_fees_sat bigint[],
    p_feerates_e8 bigint[],
    p_core_feerates_sat_vb bigint[],
    p_core_weights_wu bigint[],
    OUT median_fee_sat numeric,
    OUT fee_p10_sat bigint,
    OUT fee_p25_sat bigint,
    OUT fee_p75_sat bigint,
    OUT fee_p90_sat bigint,
    OUT median_feerate_sat_vb numeric,
    OUT min_feerate_sat_vb numeric,
    OUT max_feerate_sat_vb numeric,
    OUT feerate_p10_sat_vb bigint,
    OUT feerate_p25_sat_vb bigint,
    OUT feerate_p50_sat_vb bigint,
    OUT feerate_p75_sat_vb bigint,
    OUT feerate_p90_sat_vb bigint
)
RETURNS record
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    v_n integer := coalesce(cardinality(p_fees_sat), 0);
    v_total float8;
    v_thresholds float8[];
    v_result bigint[] := ARRAY[NULL, NULL, NULL, NULL, NULL]::bigint[];
    v_next integer := 1;
    v_cumulative bigint := 0;
    v_i integer;
BEGIN
    IF v_n > 0 THEN
        median_fee_sat := round(core.exact_median(p_fees_sat), 8);
        fee_p10_sat := p_fees_sat[ceil(v_n::float8 / 10.0::float8)::integer];
        fee_p25_sat := p_fees_sat[ceil(v_n::float8 / 4.0::float8)::integer];
        fee_p75_sat := p_fees_sat[ceil((v_n::float8 * 3.0::float8) / 4.0::float8)::integer];
        fee_p90_sat := p_fees_sat[ceil((v_n::float8 * 9.0::float8) / 10.0::float8)::integer];
    END IF;

    v_n := coalesce(cardinality(p_feerates_e8), 0);
    IF v_n > 0 THEN
        median_feerate_sat_vb := round(core.exact_median(p_feerates_e8) / 100000000, 8);
        min_feerate_sat_vb := round(p_feerates_e8[1]::numeric / 100000000, 8);
        max_feerate_sat_vb := round(p_feerates_e8[v_n]::numeric / 100000000, 8);
    END IF;

    -- Core's CalculatePercentilesByWeight over the sorted (feerate, weight) pairs.
    v_n := coalesce(cardinality(p_core_feerates_sat_vb), 0);
    IF v_n > 0 THEN
        SELECT sum(w)::float8 INTO v_total FROM unnest(p_core_weights_wu) AS u (w);
        v_thresholds := ARRAY[
            v_total / 10.0::float8, v_total / 4.0::float8, v_total / 2.0::float8,
            (v_total * 3.0::float8) / 4.0::float8, (v_total * 9.0::float8) / 10.0::float8
        ];
        FOR v_i IN 1 .. v_n LOOP
            v_cumulative := v_cumulative + p_core_weights_wu[v_i];
            WHILE v_next <= 5 AND v_cumulative::float8 >= v_thresholds[v_next] LOOP
                v_result[v_next] := p_core_feerates_sat_vb[v_i];
                v_next := v_next + 1;
            END LOOP;
            EXIT WHEN v_next > 5;
        END LOOP;
        WHILE v_next <= 5 LOOP
            v_result[v_next] := p_core_feerates_sat_vb[v_n];
            v_next := v_next + 1;
        END LOOP;
        feerate_p10_sat_vb := v_result[1];
        feerate_p25_sat_vb := v_result[2];
        feerate_p50_sat_vb := v_result[3];
        feerate_p75_sat_vb := v_result[4];
        feerate_p90_sat_vb := v_result[5];
    END IF;
END
$$;
COMMENT ON FUNCTION core.btc_fee_stats(bigint[], bigint[], bigint[], bigint[]) IS 'Exact median and percentiles (Bitcoin Core getblockstats rules) of fee observations given as sorted arrays.';

-- core.build_block_fee_facts(p_from, p_to)
-- The per-transaction fee work of heights p_from..p_to, done once: every stored block of the range gets
-- one core.btc_block_fee_facts row (empty arrays and NULL statistics without fee observations) with its
-- observations as sorted arrays, their sums and core.btc_fee_stats of them. A fee observation is a
-- non-coinbase transaction whose fee the node reported; vsize = coalesce(vsize, ceil(weight / 4)) (core.btc_tx_vsize_vb),
-- weight = coalesce(weight, 4 x size) as everywhere else; a zero vsize or weight has no feerate.
-- Called by core.build_primitive_block (the loader's batch transaction). Safe to re-run.
CREATE OR REPLACE FUNCTION core.build_block_fee_facts(p_from bigint, p_to bigint)
RETURNS integer
LANGUAGE plpgsql VOLATILE
-- A loader batch of many blocks sorts all their observations by height: 4 MB (the default) spilled to disk
-- for 20 blocks of 2,500 transactions.
SET work_mem = '64MB'
AS $$
DECLARE
    v_rows integer;
BEGIN
    DELETE FROM core.btc_block_fee_facts WHERE height BETWEEN p_from AND p_to;

    INSERT INTO core.btc_block_fee_facts (
        height, fee_tx_count, fee_total_sat, fee_vsize_total_vb, fee_weight_total_wu,
        fees_sorted_sat, feerates_sorted_e8, core_feerates_sat_vb, core_feerate_weights_wu,
        median_fee_sat, fee_p10_sat, fee_p25_sat, fee_p75_sat, fee_p90_sat,
        median_feerate_sat_vb, min_feerate_sat_vb, max_feerate_sat_vb,
        feerate_p10_sat_vb, feerate_p25_sat_vb, feerate_p50_sat_vb, feerate_p75_sat_vb, feerate_p90_sat_vb
    )
    WITH obs AS (
        SELECT
            t.height,
            t.fee_sat,
            core.btc_tx_vsize_vb(t.vsize, t.weight, t.size) AS vsize_vb,
            core.btc_tx_weight_wu(t.weight, t.size) AS weight_wu
        FROM raw.btc_tx_raw AS t
        WHERE t.height BETWEEN p_from AND p_to AND NOT t.is_coinbase AND t.fee_sat IS NOT NULL
    ),

    rated AS (
        SELECT
            o.height,
            o.fee_sat,
            o.vsize_vb,
            o.weight_wu,
            -- round(fee / vsize, 8) x 10^8 in integers (half away from zero, as numeric round does);
            -- numeric only for fees of 400 BTC or more (their doubled 10^8 multiple would overflow bigint).
            CASE
                WHEN o.vsize_vb <= 0 THEN NULL
                WHEN o.fee_sat < 40000000000 THEN (o.fee_sat * 200000000 + o.vsize_vb) / (2 * o.vsize_vb)
                ELSE (round(o.fee_sat::numeric / o.vsize_vb, 8) * 100000000)::bigint
            END AS feerate_e8,
            CASE WHEN o.weight_wu > 0 THEN (o.fee_sat * 4) / o.weight_wu END AS core_rate
        FROM obs AS o
    ),

    per_block AS (
        SELECT
            r.height,
            count(*)::integer AS fee_tx_count,
            sum(r.fee_sat)::bigint AS fee_total_sat,
            sum(r.vsize_vb)::bigint AS fee_vsize_total_vb,
            sum(r.weight_wu)::bigint AS fee_weight_total_wu,
            array_agg(r.fee_sat ORDER BY r.fee_sat) AS fees_sorted_sat,
            coalesce(
                array_agg(r.feerate_e8 ORDER BY r.feerate_e8) FILTER (WHERE r.feerate_e8 IS NOT NULL), '{}'
            ) AS feerates_sorted_e8
        FROM rated AS r
        GROUP BY r.height
    ),

    core_rates AS (
        SELECT
            c.height,
            array_agg(c.core_rate ORDER BY c.core_rate) AS core_feerates_sat_vb,
            array_agg(c.weight_wu ORDER BY c.core_rate) AS core_feerate_weights_wu
        FROM (
            SELECT
                r.height,
                r.core_rate,
                sum(r.weight_wu)::bigint AS weight_wu
            FROM rated AS r
            WHERE r.core_rate IS NOT NULL
            GROUP BY r.height, r.core_rate
        ) AS c
        GROUP BY c.height
    ),

    facts AS (
        SELECT
            b.height,
            coalesce(pb.fee_tx_count, 0) AS fee_tx_count,
            coalesce(pb.fee_total_sat, 0) AS fee_total_sat,
            coalesce(pb.fee_vsize_total_vb, 0) AS fee_vsize_total_vb,
            coalesce(pb.fee_weight_total_wu, 0) AS fee_weight_total_wu,
            coalesce(pb.fees_sorted_sat, '{}') AS fees_sorted_sat,
            coalesce(pb.feerates_sorted_e8, '{}') AS feerates_sorted_e8,
            coalesce(cr.core_feerates_sat_vb, '{}') AS core_feerates_sat_vb,
            coalesce(cr.core_feerate_weights_wu, '{}') AS core_feerate_weights_wu
        FROM raw.btc_blocks_raw AS b
        LEFT JOIN per_block AS pb ON b.height = pb.height
        LEFT JOIN core_rates AS cr ON b.height = cr.height
        WHERE b.height BETWEEN p_from AND p_to
    )

    SELECT
        f.height,
        f.fee_tx_count,
        f.fee_total_sat,
        f.fee_vsize_total_vb,
        f.fee_weight_total_wu,
        f.fees_sorted_sat,
        f.feerates_sorted_e8,
        f.core_feerates_sat_vb,
        f.core_feerate_weights_wu,
        s.median_fee_sat,
        s.fee_p10_sat,
        s.fee_p25_sat,
        s.fee_p75_sat,
        s.fee_p90_sat,
        s.median_feerate_sat_vb,
        s.min_feerate_sat_vb,
        s.max_feerate_sat_vb,
        s.feerate_p10_sat_vb,
        s.feerate_p25_sat_vb,
        s.feerate_p50_sat_vb,
        s.feerate_p75_sat_vb,
        s.feerate_p90_sat_vb
    FROM facts AS f
    CROSS JOIN LATERAL core.btc_fee_stats(
        f.fees_sorted_sat, f.feerates_sorted_e8, f.core_feerates_sat_vb, f.core_feerate_weights_wu
    ) AS s;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION core.build_block_fee_facts(bigint, bigint) IS 'Write core.btc_block_fee_facts for a height range from its transactions (the only fee pass over raw.btc_tx_raw).';

-- core.btc_fee_stats_of_blocks(p_heights), the statistics of a set of blocks from their fee facts:
-- sql/functions/021_btc_fee_selection.sql.

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
--   cumulative_supply_sat = running sum of issued_sat from genesis (or from the node's UTXO seed below the
--                    first stored block, core.btc_supply_base); NULL while a lower height is missing.
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

    -- Supply through p_from - 1 (core.btc_supply_base, 025: the stored block's, 0 at genesis, or the node's
    -- UTXO seed for a chain stored from above); NULL (unknown) otherwise.
    v_base := core.btc_supply_base(p_from - 1);

    -- The block's fee observations, once (core.btc_block_fee_facts); its min/max feerate come from them.
    PERFORM core.build_block_fee_facts(p_from, p_to);

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
            sum(core.btc_tx_vsize_vb(t.vsize, t.weight, t.size))::bigint AS tx_vsize_total_vb,
            (count(*) FILTER (WHERE t.is_segwit AND NOT t.is_coinbase))::integer AS segwit_tx_count,
            coalesce(sum(t.size) FILTER (WHERE t.is_segwit AND NOT t.is_coinbase), 0)::bigint AS sw_total_size_bytes,
            coalesce(sum(core.btc_tx_weight_wu(t.weight, t.size)) FILTER (WHERE t.is_segwit AND NOT t.is_coinbase), 0)::bigint
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
            -- min/max of round(fee / vsize, 8) over the block's transactions with a fee: the first and last
            -- of its sorted feerates (core.btc_block_fee_facts, written above; used only when every fee is known).
            ff.min_feerate_sat_vb,
            ff.max_feerate_sat_vb,
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
        LEFT JOIN core.btc_block_fee_facts AS ff ON b.height = ff.height
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
