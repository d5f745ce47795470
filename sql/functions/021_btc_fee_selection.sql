-- Fee statistics of a set of blocks (10m bucket, hour, day) from their per-block fee facts, by
-- order-statistic selection over the blocks' sorted arrays instead of merging them.
-- (Apart from sql/functions/020_btc_primitive_block.sql because they need the type core.btc_fee_arrays
-- and the column core.btc_block_fee_facts.core_feerate_cum_weights_wu of a later revision than the one
-- that applies that file.)

-- core.btc_cumulative_sum(values): the running sums of an array ({1, 2, 3} -> {1, 3, 6}); '{}' for an
-- empty array. What core.btc_block_fee_facts.core_feerate_cum_weights_wu is generated from.
CREATE OR REPLACE FUNCTION core.btc_cumulative_sum(p_values bigint[])
RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(s.total ORDER BY s.i), '{}')
    FROM (
        SELECT
            u.i,
            sum(u.v) OVER (ORDER BY u.i)::bigint AS total
        FROM unnest(p_values) WITH ORDINALITY AS u (v, i)
    ) AS s
$$;
COMMENT ON FUNCTION core.btc_cumulative_sum(bigint[]) IS 'Running sums of an array (the cumulative Core feerate weights of a block).';

-- core.btc_fee_stats_of_blocks(p_heights): core.btc_fee_stats of the union of the fee observations of the
-- blocks p_heights, from core.btc_block_fee_facts only, with the same results as merging the blocks'
-- sorted arrays and applying core.btc_fee_stats to them (tests/test_block_fee_facts.py compares both).
-- One block: its stored statistics. Two or more: every statistic is an order statistic (the element of
-- rank r of the union) or Core's first feerate whose cumulative weight reaches a threshold, found by a
-- binary search over the value v with the count of elements <= v in each block's sorted array given by
-- width_bucket (a binary search in C); no array is merged, sorted or unnested:
--   fee rank r = lower middle (n + 1) / 2, ceil(n / 10), ceil(n / 4), ceil(3n / 4), ceil(9n / 10): the
--     smallest integer v with sum_j count(fees_j <= v) >= r, searched between the smallest and largest of
--     the blocks' own elements at the same fraction (the union's lies between them); the upper middle
--     n / 2 + 1 is that element again or the next element of one of the blocks;
--   feerate median: the same over feerates_sorted_e8; min/max: the blocks' first and last elements;
--   Core's weighted percentiles: the smallest integer feerate x with sum_j (cumulative weight of the
--     block's Core feerates <= x) >= total / 10, / 4, / 2, x 3 / 4, x 9 / 10 (double precision, as
--     core.btc_fee_stats), from core_feerate_cum_weights_wu.
-- Cost per statistic: about log2(value range) x k width_bucket calls for k blocks, instead of a sort of
-- every observation. No block or no observation: no row (callers LEFT JOIN LATERAL ... ON true).
CREATE OR REPLACE FUNCTION core.btc_fee_stats_of_blocks(p_heights bigint[])
RETURNS TABLE (
    median_fee_sat numeric,
    fee_p10_sat bigint,
    fee_p25_sat bigint,
    fee_p75_sat bigint,
    fee_p90_sat bigint,
    median_feerate_sat_vb numeric,
    min_feerate_sat_vb numeric,
    max_feerate_sat_vb numeric,
    feerate_p10_sat_vb bigint,
    feerate_p25_sat_vb bigint,
    feerate_p50_sat_vb bigint,
    feerate_p75_sat_vb bigint,
    feerate_p90_sat_vb bigint
)
LANGUAGE plpgsql STABLE PARALLEL SAFE
ROWS 1
AS $$
DECLARE
    v_sets core.btc_fee_arrays[];
    v_k integer;
    v_n bigint;          -- fee observations of the union
    v_nr bigint;         -- feerates of the union
    v_total float8;      -- Core weight of the union
    v_thresholds float8[];
    v_found bigint[] := ARRAY[NULL, NULL, NULL, NULL, NULL, NULL, NULL]::bigint[];
    v_task integer;
    v_size bigint;
    v_rank bigint;
    v_lo bigint;
    v_hi bigint;
    v_mid bigint;
    v_count bigint;
    v_next bigint;
    v_j integer;
    v_at integer;
BEGIN
    IF coalesce(cardinality(p_heights), 0) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(p_heights) = 1 THEN
        RETURN QUERY
        SELECT
            f.median_fee_sat,
            f.fee_p10_sat,
            f.fee_p25_sat,
            f.fee_p75_sat,
            f.fee_p90_sat,
            f.median_feerate_sat_vb,
            f.min_feerate_sat_vb,
            f.max_feerate_sat_vb,
            f.feerate_p10_sat_vb,
            f.feerate_p25_sat_vb,
            f.feerate_p50_sat_vb,
            f.feerate_p75_sat_vb,
            f.feerate_p90_sat_vb
        FROM core.btc_block_fee_facts AS f
        WHERE f.height = p_heights[1] AND f.fee_tx_count > 0;
        RETURN;
    END IF;

    -- The blocks' arrays, detoasted once (array_cat with an empty array returns its input detoasted, so
    -- width_bucket reads them in place instead of decompressing them at every call).
    SELECT
        array_agg(ROW(
            array_cat(f.fees_sorted_sat, '{}'), array_cat(f.feerates_sorted_e8, '{}'),
            array_cat(f.core_feerates_sat_vb, '{}'), array_cat(f.core_feerate_cum_weights_wu, '{}')
        )::core.btc_fee_arrays ORDER BY f.height),
        sum(f.fee_tx_count),
        sum(cardinality(f.feerates_sorted_e8)),
        sum(coalesce(f.core_feerate_cum_weights_wu[cardinality(f.core_feerate_cum_weights_wu)], 0))::float8
    INTO v_sets, v_n, v_nr, v_total
    FROM core.btc_block_fee_facts AS f
    WHERE f.height = ANY(p_heights) AND f.fee_tx_count > 0;
    IF v_n IS NULL THEN
        RETURN;
    END IF;
    v_k := cardinality(v_sets);

    -- Order statistics: 1 fee lower middle, 2 fee p10, 3 p25, 4 p75, 5 p90, 6 feerate lower middle.
    FOR v_task IN 1 .. 6 LOOP
        v_size := CASE WHEN v_task <= 5 THEN v_n ELSE v_nr END;
        CONTINUE WHEN v_size = 0;
        v_rank := CASE v_task
            WHEN 2 THEN ceil(v_size::float8 / 10.0::float8)::bigint
            WHEN 3 THEN ceil(v_size::float8 / 4.0::float8)::bigint
            WHEN 4 THEN ceil((v_size::float8 * 3.0::float8) / 4.0::float8)::bigint
            WHEN 5 THEN ceil((v_size::float8 * 9.0::float8) / 10.0::float8)::bigint
            ELSE (v_size + 1) / 2
        END;
        -- Bounds: the blocks' own elements at the same fraction.
        v_lo := NULL;
        v_hi := NULL;
        FOR v_j IN 1 .. v_k LOOP
            v_size := CASE WHEN v_task <= 5 THEN cardinality((v_sets[v_j]).fees_sat)
                           ELSE cardinality((v_sets[v_j]).feerates_e8) END;
            CONTINUE WHEN v_size = 0;
            v_at := CASE v_task
                WHEN 2 THEN ceil(v_size::float8 / 10.0::float8)::integer
                WHEN 3 THEN ceil(v_size::float8 / 4.0::float8)::integer
                WHEN 4 THEN ceil((v_size::float8 * 3.0::float8) / 4.0::float8)::integer
                WHEN 5 THEN ceil((v_size::float8 * 9.0::float8) / 10.0::float8)::integer
                ELSE ((v_size + 1) / 2)::integer
            END;
            v_mid := CASE WHEN v_task <= 5 THEN (v_sets[v_j]).fees_sat[v_at] ELSE (v_sets[v_j]).feerates_e8[v_at] END;
            v_lo := least(v_lo, v_mid);
            v_hi := greatest(v_hi, v_mid);
        END LOOP;
        -- The smallest v in [lo, hi] with count(<= v) >= rank (count(<= hi) >= rank > count(< lo)).
        WHILE v_lo < v_hi LOOP
            v_mid := v_lo + (v_hi - v_lo) / 2;
            v_count := 0;
            IF v_task <= 5 THEN
                FOR v_j IN 1 .. v_k LOOP
                    v_count := v_count + width_bucket(v_mid, (v_sets[v_j]).fees_sat);
                END LOOP;
            ELSE
                FOR v_j IN 1 .. v_k LOOP
                    v_count := v_count + width_bucket(v_mid, (v_sets[v_j]).feerates_e8);
                END LOOP;
            END IF;
            IF v_count >= v_rank THEN
                v_hi := v_mid;
            ELSE
                v_lo := v_mid + 1;
            END IF;
        END LOOP;
        v_found[v_task] := v_lo;
    END LOOP;

    -- Upper middles (rank n / 2 + 1): the lower middle again, or the smallest element above it.
    FOR v_task IN 1 .. 2 LOOP
        v_size := CASE WHEN v_task = 1 THEN v_n ELSE v_nr END;
        v_mid := v_found[CASE WHEN v_task = 1 THEN 1 ELSE 6 END];
        CONTINUE WHEN v_size = 0;
        v_count := 0;
        v_next := NULL;
        FOR v_j IN 1 .. v_k LOOP
            IF v_task = 1 THEN
                v_at := width_bucket(v_mid, (v_sets[v_j]).fees_sat);
                v_count := v_count + v_at;
                v_next := least(v_next, (v_sets[v_j]).fees_sat[v_at + 1]);
            ELSE
                v_at := width_bucket(v_mid, (v_sets[v_j]).feerates_e8);
                v_count := v_count + v_at;
                v_next := least(v_next, (v_sets[v_j]).feerates_e8[v_at + 1]);
            END IF;
        END LOOP;
        v_next := CASE WHEN v_count >= v_size / 2 + 1 THEN v_mid ELSE v_next END;
        IF v_task = 1 THEN
            median_fee_sat := round((v_mid + v_next)::numeric / 2, 8);
        ELSE
            median_feerate_sat_vb := round((v_mid + v_next)::numeric / 200000000, 8);
        END IF;
    END LOOP;
    fee_p10_sat := v_found[2];
    fee_p25_sat := v_found[3];
    fee_p75_sat := v_found[4];
    fee_p90_sat := v_found[5];

    IF v_nr > 0 THEN
        v_lo := NULL;
        v_hi := NULL;
        FOR v_j IN 1 .. v_k LOOP
            v_size := cardinality((v_sets[v_j]).feerates_e8);
            CONTINUE WHEN v_size = 0;
            v_lo := least(v_lo, (v_sets[v_j]).feerates_e8[1]);
            v_hi := greatest(v_hi, (v_sets[v_j]).feerates_e8[v_size]);
        END LOOP;
        min_feerate_sat_vb := round(v_lo::numeric / 100000000, 8);
        max_feerate_sat_vb := round(v_hi::numeric / 100000000, 8);
    END IF;

    -- Core's weighted percentiles (CalculatePercentilesByWeight over the union's (feerate, weight) pairs).
    IF v_total > 0 THEN
        v_thresholds := ARRAY[
            v_total / 10.0::float8, v_total / 4.0::float8, v_total / 2.0::float8,
            (v_total * 3.0::float8) / 4.0::float8, (v_total * 9.0::float8) / 10.0::float8
        ];
        FOR v_task IN 1 .. 5 LOOP
            v_lo := NULL;
            v_hi := NULL;
            FOR v_j IN 1 .. v_k LOOP
                v_size := cardinality((v_sets[v_j]).core_feerates_sat_vb);
                CONTINUE WHEN v_size = 0;
                v_lo := least(v_lo, (v_sets[v_j]).core_feerates_sat_vb[1]);
                v_hi := greatest(v_hi, (v_sets[v_j]).core_feerates_sat_vb[v_size]);
            END LOOP;
            WHILE v_lo < v_hi LOOP
                v_mid := v_lo + (v_hi - v_lo) / 2;
                v_count := 0;
                FOR v_j IN 1 .. v_k LOOP
                    v_count := v_count + coalesce((v_sets[v_j]).core_cum_weights_wu[
                        width_bucket(v_mid, (v_sets[v_j]).core_feerates_sat_vb)], 0);
                END LOOP;
                IF v_count::float8 >= v_thresholds[v_task] THEN
                    v_hi := v_mid;
                ELSE
                    v_lo := v_mid + 1;
                END IF;
            END LOOP;
            v_found[v_task] := v_lo;
        END LOOP;
        feerate_p10_sat_vb := v_found[1];
        feerate_p25_sat_vb := v_found[2];
        feerate_p50_sat_vb := v_found[3];
        feerate_p75_sat_vb := v_found[4];
        feerate_p90_sat_vb := v_found[5];
    END IF;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION core.btc_fee_stats_of_blocks(bigint[]) IS 'Exact fee median and percentiles of a set of blocks, by order-statistic selection over their per-block sorted fee arrays.';
