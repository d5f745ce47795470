-- UTXO and coin-age facts per block (docs/data-contract.md "UTXO and coin-age facts"), from what the loader
-- wrote in its batch: raw.btc_tx_raw (outputs entering the UTXO set) and raw.btc_prevout_stage (each
-- non-coinbase input's prevout: value, creation height, script size, coinbase flag).

-- core.btc_utxo_base(p_height): the UTXO set state after block p_height, the base a range starting at
-- p_height + 1 carries forward: the stored block's facts; an empty set before genesis and after it (p_height
-- -1 or 0: the genesis coinbase never enters the set, so a chain stored from height 1 knows it); the node's snapshot in core.btc_utxo_seed
-- for a chain stored from above (no creation times below it: utxo_value_x_created_epoch and the cumulative
-- coin-seconds stay unknown). No row: unknown.
CREATE OR REPLACE FUNCTION core.btc_utxo_base(p_height bigint)
RETURNS TABLE (
    utxo_count_total bigint,
    utxo_value_total_sat bigint,
    utxo_bogo_total_bytes bigint,
    utxo_value_x_created_epoch numeric,
    cdd_cumulative_sat_sec numeric
)
LANGUAGE sql STABLE
AS $$
    SELECT 0::bigint, 0::bigint, 0::bigint, 0::numeric, 0::numeric
    WHERE p_height = -1
       OR (p_height = 0 AND NOT EXISTS (SELECT 1 FROM core.btc_block_utxo_facts AS f WHERE f.height = 0))
    UNION ALL
    SELECT f.utxo_count_total, f.utxo_value_total_sat, f.utxo_bogo_total_bytes, f.utxo_value_x_created_epoch,
           f.cdd_cumulative_sat_sec
    FROM core.btc_block_utxo_facts AS f
    WHERE f.height = p_height
    UNION ALL
    SELECT s.utxo_count, s.utxo_value_sat, s.utxo_bogo_bytes, NULL::numeric, NULL::numeric
    FROM core.btc_utxo_seed AS s
    WHERE s.height = p_height
      AND NOT EXISTS (SELECT 1 FROM core.btc_block_utxo_facts AS f WHERE f.height = p_height)
    LIMIT 1
$$;
COMMENT ON FUNCTION core.btc_utxo_base(bigint) IS 'The UTXO set state after a height: stored facts, the empty set before genesis, or the node seed.';

-- core.btc_supply_base(p_height): the supply (core.btc_primitive_block.cumulative_supply_sat) through block
-- p_height, the base core.build_primitive_block carries a range starting at p_height + 1 from: the stored
-- block's; 0 before genesis and after it when genesis is not stored (it issues nothing); for a chain stored
-- from above, the node's snapshot in core.btc_utxo_seed: its utxo_value_sat (gettxoutsetinfo total_amount).
-- That seed counts what is spendable at p_height, so it is lower than the supply a chain stored from
-- genesis has there by the value issued below and no longer in the set without being spent: paid to
-- unspendable outputs (OP_RETURN, scripts over 10,000 bytes), fees a coinbase left unclaimed, mainnet's two
-- overwritten BIP30 coinbases (docs/data-contract.md "A chain stored from a height S above 1"). NULL: unknown.
CREATE OR REPLACE FUNCTION core.btc_supply_base(p_height bigint)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN p_height < 0 THEN 0::bigint
        WHEN EXISTS (SELECT 1 FROM core.btc_primitive_block AS pb WHERE pb.height = p_height)
            THEN (SELECT pb.cumulative_supply_sat FROM core.btc_primitive_block AS pb WHERE pb.height = p_height)
        WHEN p_height = 0 THEN 0::bigint
        ELSE (SELECT s.utxo_value_sat FROM core.btc_utxo_seed AS s WHERE s.height = p_height)
    END
$$;
COMMENT ON FUNCTION core.btc_supply_base(bigint) IS 'Supply through a height: the stored block''s, 0 at genesis, or the node seed''s UTXO value (gettxoutsetinfo total_amount).';

-- api fields of core.btc_block_utxo_facts: *
-- core.build_block_utxo_facts(p_from, p_to): core.btc_block_utxo_facts and core.btc_block_spent_by_day for the
-- stored blocks p_from..p_to (called by core.finish_block_batch after core.build_primitive_block, in the
-- loader's transaction), then the batch's rows of raw.btc_prevout_stage are deleted. Rules:
--   created   = the block's outputs entering the UTXO set (btc_tx_raw.utxo_output_*; genesis: none, its
--               coinbase is unspendable); bogosize = 50 + script length per output (gettxoutsetinfo);
--               NULL when a transaction row lacks them.
--   prevouts_known = every non-coinbase input of the block has a prevout row; else the block's spent side
--               (and everything computed from it) is NULL and its stage rows are ignored.
--   spent     = those prevouts: count, value, bogosize, how many were coinbase outputs; undated = created in a
--               block that is not stored (below the lowest stored height): no creation time.
--   age       = spend block's event time - creation block's event time (median time past, as buckets);
--               young = age < 3600 s; cdd_sat_sec = sum of value x age (NULL when an input is undated).
--   utxo_increase = created - spent; utxo_size_inc_bytes = created bogosize - spent bogosize.
--   state after the block = core.btc_utxo_base(p_from - 1) + the running sum of the deltas; NULL from the first
--               block with an unknown delta on (and when the base is unknown). The state of stored blocks
--               directly above p_to (a range filled below them) is carried through their run.
-- Safe to re-run for a range whose stage rows are present; without them the spent side becomes unknown.
CREATE OR REPLACE FUNCTION core.build_block_utxo_facts(p_from bigint, p_to bigint)
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_rows integer;
    v_run_end bigint;
    v_staged bigint;
BEGIN
    -- The stage is filled and emptied inside each batch's transaction, so autovacuum only ever finds it
    -- empty and records 0 rows over its pages: the planner then takes a batch's stage rows for one and may
    -- rescan an aggregate of them once per stage row (a 100,000-tx batch, 206,565 stage rows, ran for over
    -- 7 minutes at bench.scale's month; 0.5 s with statistics). ANALYZE sees this transaction's own rows;
    -- it runs when the recorded size is below half of what is staged (after such a VACUUM, or the first time).
    SELECT count(*) INTO v_staged FROM raw.btc_prevout_stage AS s WHERE s.spend_height BETWEEN p_from AND p_to;
    IF v_staged > 0 AND v_staged > 2 * (
        SELECT greatest(c.reltuples, 0) FROM pg_class AS c WHERE c.oid = 'raw.btc_prevout_stage'::regclass
    ) THEN
        ANALYZE raw.btc_prevout_stage;
    END IF;

    DELETE FROM core.btc_block_spent_by_day WHERE spend_height BETWEEN p_from AND p_to;
    DELETE FROM core.btc_block_utxo_facts WHERE height BETWEEN p_from AND p_to;

    CREATE TEMP TABLE IF NOT EXISTS pg_temp.utxo_spent_rows (
        spend_height bigint,
        created_height bigint,
        value_sat bigint,
        script_bytes integer,
        is_coinbase boolean,
        age_sec bigint,
        created_epoch bigint,
        created_day date
    ) ON COMMIT DROP;
    TRUNCATE pg_temp.utxo_spent_rows;

    -- The stage rows of the blocks whose every input has one, with the creation block's time (NULL: undated).
    INSERT INTO pg_temp.utxo_spent_rows
    WITH inputs AS MATERIALIZED (
        SELECT t.height, coalesce(sum(t.input_count) FILTER (WHERE NOT t.is_coinbase), 0)::bigint AS n
        FROM raw.btc_tx_raw AS t
        WHERE t.height BETWEEN p_from AND p_to
        GROUP BY t.height
    ),

    staged AS MATERIALIZED (
        SELECT s.spend_height, count(*) AS n
        FROM raw.btc_prevout_stage AS s
        WHERE s.spend_height BETWEEN p_from AND p_to
        GROUP BY s.spend_height
    )

    SELECT
        s.spend_height,
        s.created_height,
        s.value_sat,
        s.script_bytes,
        s.is_coinbase,
        (extract(EPOCH FROM sb.event_time) - extract(EPOCH FROM cb.event_time))::bigint,
        extract(EPOCH FROM cb.event_time)::bigint,
        (cb.event_time AT TIME ZONE 'UTC')::date
    FROM raw.btc_prevout_stage AS s
    INNER JOIN staged AS g ON s.spend_height = g.spend_height
    INNER JOIN inputs AS i ON s.spend_height = i.height AND g.n = i.n
    INNER JOIN core.btc_primitive_block AS sb ON s.spend_height = sb.height
    LEFT JOIN core.btc_primitive_block AS cb ON s.created_height = cb.height AND s.created_height <= s.spend_height
    WHERE s.spend_height BETWEEN p_from AND p_to;

    INSERT INTO core.btc_block_spent_by_day (
        spend_height, created_day, output_count, value_sat, value_x_created_epoch, young_count, young_value_sat
    )
    SELECT
        r.spend_height,
        r.created_day,
        count(*),
        sum(r.value_sat)::bigint,
        sum(r.value_sat::numeric * r.created_epoch),
        count(*) FILTER (WHERE r.age_sec < 3600),
        coalesce(sum(r.value_sat) FILTER (WHERE r.age_sec < 3600), 0)::bigint
    FROM pg_temp.utxo_spent_rows AS r
    WHERE r.created_day IS NOT NULL
    GROUP BY r.spend_height, r.created_day;

    INSERT INTO core.btc_block_utxo_facts (
        height, created_utxo_count, created_utxo_value_sat, created_utxo_bogo_bytes, input_count, prevouts_known,
        spent_count, spent_value_sat, spent_bogo_bytes, spent_coinbase_count, spent_undated_count,
        utxo_increase, utxo_size_inc_bytes, cdd_sat_sec,
        utxo_count_total, utxo_value_total_sat, utxo_bogo_total_bytes, utxo_value_x_created_epoch,
        cdd_cumulative_sat_sec
    )
    WITH created AS (
        SELECT
            t.height,
            coalesce(sum(t.input_count) FILTER (WHERE NOT t.is_coinbase), 0)::bigint AS input_count,
            CASE WHEN t.height = 0 THEN 0 ELSE sum(t.utxo_output_count) END::bigint AS n,
            CASE WHEN t.height = 0 THEN 0 ELSE sum(t.utxo_output_value_sat) END::bigint AS value_sat,
            CASE WHEN t.height = 0 THEN 0 ELSE 50 * sum(t.utxo_output_count) + sum(t.utxo_output_script_bytes) END::bigint
                AS bogo_bytes,
            bool_and(t.utxo_output_count IS NOT NULL AND t.utxo_output_value_sat IS NOT NULL
                     AND t.utxo_output_script_bytes IS NOT NULL) OR t.height = 0 AS known
        FROM raw.btc_tx_raw AS t
        WHERE t.height BETWEEN p_from AND p_to
        GROUP BY t.height
    ),

    spent AS (
        SELECT
            r.spend_height AS height,
            count(*) AS n,
            sum(r.value_sat)::bigint AS value_sat,
            sum(50 + r.script_bytes)::bigint AS bogo_bytes,
            count(*) FILTER (WHERE r.is_coinbase) AS coinbase_n,
            count(*) FILTER (WHERE r.created_day IS NULL) AS undated_n,
            sum(r.value_sat::numeric * r.age_sec) AS cdd_sat_sec,
            sum(r.value_sat::numeric * r.created_epoch) AS value_x_created_epoch
        FROM pg_temp.utxo_spent_rows AS r
        GROUP BY r.spend_height
    ),

    deltas AS (
        SELECT
            c.height,
            CASE WHEN c.known THEN c.n END AS created_n,
            CASE WHEN c.known THEN c.value_sat END AS created_value_sat,
            CASE WHEN c.known THEN c.bogo_bytes END AS created_bogo_bytes,
            c.input_count,
            c.input_count = 0 OR s.height IS NOT NULL AS prevouts_known,
            CASE WHEN c.input_count = 0 THEN 0 ELSE s.n END AS spent_n,
            CASE WHEN c.input_count = 0 THEN 0 ELSE s.value_sat END AS spent_value_sat,
            CASE WHEN c.input_count = 0 THEN 0 ELSE s.bogo_bytes END AS spent_bogo_bytes,
            CASE WHEN c.input_count = 0 THEN 0 ELSE s.coinbase_n END AS spent_coinbase_n,
            CASE WHEN c.input_count = 0 THEN 0 ELSE s.undated_n END AS spent_undated_n,
            CASE WHEN c.input_count = 0 THEN 0 WHEN s.undated_n = 0 THEN s.cdd_sat_sec END AS cdd_sat_sec,
            CASE WHEN c.input_count = 0 THEN 0 WHEN s.undated_n = 0 THEN s.value_x_created_epoch END
                AS spent_value_x_created_epoch,
            extract(EPOCH FROM pb.event_time)::bigint AS event_epoch
        FROM created AS c
        INNER JOIN core.btc_primitive_block AS pb ON c.height = pb.height
        LEFT JOIN spent AS s ON c.height = s.height
    ),

    steps AS (
        SELECT
            d.*,
            d.created_n - d.spent_n AS utxo_increase,
            d.created_bogo_bytes - d.spent_bogo_bytes AS utxo_size_inc_bytes,
            d.created_value_sat::numeric * d.event_epoch - d.spent_value_x_created_epoch AS epoch_delta,
            -- Blocks from the first unknown delta on have an unknown state.
            count(*) FILTER (WHERE d.created_n IS NULL OR d.spent_n IS NULL) OVER w AS unknown_counts,
            count(*) FILTER (WHERE d.cdd_sat_sec IS NULL) OVER w AS unknown_ages,
            sum(d.created_n - d.spent_n) OVER w AS run_count,
            sum(d.created_value_sat - d.spent_value_sat) OVER w AS run_value,
            sum(d.created_bogo_bytes - d.spent_bogo_bytes) OVER w AS run_bogo,
            sum(d.created_value_sat::numeric * d.event_epoch - d.spent_value_x_created_epoch) OVER w AS run_epoch,
            sum(d.cdd_sat_sec) OVER w AS run_cdd
        FROM deltas AS d
        WINDOW w AS (ORDER BY d.height)
    )

    SELECT
        s.height,
        s.created_n,
        s.created_value_sat,
        s.created_bogo_bytes,
        s.input_count,
        s.prevouts_known,
        s.spent_n,
        s.spent_value_sat,
        s.spent_bogo_bytes,
        s.spent_coinbase_n,
        s.spent_undated_n,
        s.utxo_increase,
        s.utxo_size_inc_bytes,
        s.cdd_sat_sec,
        CASE WHEN s.unknown_counts = 0 THEN b.utxo_count_total + s.run_count END,
        CASE WHEN s.unknown_counts = 0 THEN b.utxo_value_total_sat + s.run_value END,
        CASE WHEN s.unknown_counts = 0 THEN b.utxo_bogo_total_bytes + s.run_bogo END,
        CASE WHEN s.unknown_counts = 0 AND s.unknown_ages = 0 THEN b.utxo_value_x_created_epoch + s.run_epoch END,
        CASE WHEN s.unknown_counts = 0 AND s.unknown_ages = 0 THEN b.cdd_cumulative_sat_sec + s.run_cdd END
    FROM steps AS s
    LEFT JOIN core.btc_utxo_base(p_from - 1) AS b ON true;
    GET DIAGNOSTICS v_rows = ROW_COUNT;

    DELETE FROM raw.btc_prevout_stage WHERE spend_height BETWEEN p_from AND p_to;

    -- Stored blocks directly above p_to (a range filled below them): carry the state through their run.
    SELECT max(r.height) INTO v_run_end
    FROM (
        SELECT f.height, f.height - row_number() OVER (ORDER BY f.height) AS grp
        FROM core.btc_block_utxo_facts AS f
        WHERE f.height > p_to
    ) AS r
    WHERE r.grp = p_to;

    IF v_run_end IS NOT NULL THEN
        UPDATE core.btc_block_utxo_facts AS f
        SET utxo_count_total = s.utxo_count_total,
            utxo_value_total_sat = s.utxo_value_total_sat,
            utxo_bogo_total_bytes = s.utxo_bogo_total_bytes,
            utxo_value_x_created_epoch = s.utxo_value_x_created_epoch,
            cdd_cumulative_sat_sec = s.cdd_cumulative_sat_sec
        FROM (
            SELECT
                x.height,
                CASE WHEN x.unknown_counts = 0 THEN b.utxo_count_total + x.run_count END AS utxo_count_total,
                CASE WHEN x.unknown_counts = 0 THEN b.utxo_value_total_sat + x.run_value END AS utxo_value_total_sat,
                CASE WHEN x.unknown_counts = 0 THEN b.utxo_bogo_total_bytes + x.run_bogo END AS utxo_bogo_total_bytes,
                CASE WHEN x.unknown_counts = 0 AND x.unknown_ages = 0 THEN b.utxo_value_x_created_epoch + x.run_epoch END
                    AS utxo_value_x_created_epoch,
                CASE WHEN x.unknown_counts = 0 AND x.unknown_ages = 0 THEN b.cdd_cumulative_sat_sec + x.run_cdd END
                    AS cdd_cumulative_sat_sec
            FROM (
                SELECT
                    f2.height,
                    count(*) FILTER (WHERE f2.utxo_increase IS NULL OR f2.created_utxo_value_sat IS NULL
                                     OR f2.spent_value_sat IS NULL) OVER w AS unknown_counts,
                    count(*) FILTER (WHERE f2.cdd_sat_sec IS NULL) OVER w AS unknown_ages,
                    sum(f2.utxo_increase) OVER w AS run_count,
                    sum(f2.created_utxo_value_sat - f2.spent_value_sat) OVER w AS run_value,
                    sum(f2.utxo_size_inc_bytes) OVER w AS run_bogo,
                    sum(f2.created_utxo_value_sat::numeric * extract(EPOCH FROM pb.event_time)::bigint
                        - coalesce(sd.value_x_created_epoch, 0)) OVER w AS run_epoch,
                    sum(f2.cdd_sat_sec) OVER w AS run_cdd
                FROM core.btc_block_utxo_facts AS f2
                INNER JOIN core.btc_primitive_block AS pb ON f2.height = pb.height
                LEFT JOIN (
                    SELECT d.spend_height, sum(d.value_x_created_epoch) AS value_x_created_epoch
                    FROM core.btc_block_spent_by_day AS d
                    WHERE d.spend_height > p_to AND d.spend_height <= v_run_end
                    GROUP BY d.spend_height
                ) AS sd ON f2.height = sd.spend_height
                WHERE f2.height > p_to AND f2.height <= v_run_end
                WINDOW w AS (ORDER BY f2.height)
            ) AS x
            LEFT JOIN core.btc_utxo_base(p_to) AS b ON true
        ) AS s
        WHERE f.height = s.height
          AND (f.utxo_count_total, f.utxo_value_total_sat, f.utxo_bogo_total_bytes, f.utxo_value_x_created_epoch,
               f.cdd_cumulative_sat_sec)
              IS DISTINCT FROM (s.utxo_count_total, s.utxo_value_total_sat, s.utxo_bogo_total_bytes,
                                s.utxo_value_x_created_epoch, s.cdd_cumulative_sat_sec);
    END IF;

    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION core.build_block_utxo_facts(bigint, bigint) IS 'UTXO and coin-age facts of a height range from its outputs and staged prevouts; carries the UTXO state (idempotent with the same stage rows).';

-- core.btc_coin_age_complete_from(): the lowest height from which the coin-age metrics are complete: every
-- stored block's spent outputs dated and the UTXO state known. 0 or 1 for a chain stored from genesis (or
-- from height 1: genesis adds nothing) with prevouts throughout; NULL when the chain starts higher (the ages of the coins it inherited are not
-- known) or no block is stored. Blocks above it with unknown prevouts still give NULL metrics there.
CREATE OR REPLACE FUNCTION core.btc_coin_age_complete_from()
RETURNS bigint
LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN min(f.height) <= 1 THEN min(f.height) END FROM core.btc_block_utxo_facts AS f
$$;
COMMENT ON FUNCTION core.btc_coin_age_complete_from() IS 'Lowest height from which coin-age metrics are complete (NULL: not stored from genesis).';

-- api fields of core.btc_primitive_10m: utxo_size_inc_bytes_10m=utxo_size_inc_bytes
-- core.btc_primitive_10m_utxo(p_start, p_target, p_top_height, p_seed_height): per 10m bucket with a counted
-- block (the blocks of core.btc_primitive_10m_blocks: genesis counts in no flow), the summed
-- utxo_size_inc_bytes of its blocks; NULL when one of them is unknown. Read by core.btc_primitive_10m_rows
-- (040). The facts are read in the window's height range only (p_seed_height < height <= p_top_height, as
-- every part of the window: on TimescaleDB it excludes the chunks below the window from the plan).
DROP FUNCTION IF EXISTS core.btc_primitive_10m_utxo(timestamptz, timestamptz, bigint);
CREATE OR REPLACE FUNCTION core.btc_primitive_10m_utxo(
    p_start timestamptz, p_target timestamptz, p_top_height bigint, p_seed_height bigint DEFAULT NULL
)
RETURNS TABLE (bucket_start_utc timestamptz, utxo_size_inc_bytes bigint)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN QUERY
    SELECT
        b.bucket_start_utc,
        CASE WHEN count(*) = count(f.utxo_size_inc_bytes) THEN sum(f.utxo_size_inc_bytes)::bigint END
    FROM core.btc_primitive_10m_blocks(p_start, p_target, p_top_height, p_seed_height) AS b
    LEFT JOIN core.btc_block_utxo_facts AS f
        ON b.height = f.height AND f.height > coalesce(p_seed_height, 0) AND f.height <= p_top_height
    GROUP BY b.bucket_start_utc;
END
$$;
COMMENT ON FUNCTION core.btc_primitive_10m_utxo(timestamptz, timestamptz, bigint, bigint) IS 'UTXO set size change per 10m bucket of a build window (NULL when a block is unknown).';
