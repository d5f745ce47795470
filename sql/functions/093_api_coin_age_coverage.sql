-- Coverage of the stored chain (docs/data-contract.md "Coverage"): from which height the supply, the UTXO set
-- columns and the coin-age metrics are known, for a chain stored from genesis and for one stored from above
-- it (MQNODE_BTC_START_HEIGHT, whose supply and UTXO set start from the node's gettxoutsetinfo). After 085:
-- it reads core.btc_block_coin_age, the one rule of which blocks' coin-age facts are usable.

-- api fields of core.btc_coin_age_coverage: *
-- core.btc_coin_age_coverage: one row saying from which height the supply, the UTXO set columns and the
-- coin-age metrics of the stored chain are known (docs/data-contract.md "Coverage"). No stored block: NULLs.
--   first_stored_height, tip_height: the lowest and highest stored block.
--   utxo_seed_height: the height of core.btc_utxo_seed's snapshot below the first stored block (a chain stored
--     from above genesis), supply_seed_sat its value (gettxoutsetinfo total_amount, the seeded supply base);
--     NULL for a chain stored from genesis (or height 1) or without a snapshot.
--   supply_from_height: the lowest height with a known supply_total_sat (market cap, NVT, MVRV's numerator).
--   utxo_set_from_height: the lowest height with a known UTXO count, value and bogosize.
--   state_complete_from_height / state_complete_through_height: the heights whose UTXO set is known with
--     every coin's creation time: realized cap and price, MVRV, NUPL, UTXO coin days, cumulative CDD,
--     liveliness, age bands, holder supply, supply in profit / loss are complete there and NULL elsewhere.
--     NULL on a chain stored from above genesis (the inherited coins' creation times are not known).
--   flows_complete_from_height: the lowest height from which every stored block's spent outputs are dated:
--     the period flows (SOPR, adjusted SOPR, realized profit / loss, CDD, dormancy) are complete for every
--     period from there on; below it a period is NULL where one of its blocks spends an undated coin (created
--     below the first stored block) or has unknown prevouts, and complete otherwise. tip_height + 1: the tip
--     itself has such a spend.
--   undated_flow_block_count: the stored blocks whose flows are NULL for that reason.
CREATE OR REPLACE VIEW core.btc_coin_age_coverage AS
WITH stored AS (
    SELECT
        min(pb.height) AS first_stored_height,
        max(pb.height) AS tip_height,
        min(pb.height) FILTER (WHERE pb.cumulative_supply_sat IS NOT NULL) AS supply_from_height
    FROM core.btc_primitive_block AS pb
),

facts AS (
    SELECT
        -- core.btc_coin_age_complete_from()'s rule (a chain stored from genesis or height 1), over the same
        -- scan: the view is read as mqnode_reader, which may not call functions that read core.
        CASE WHEN min(f.height) <= 1 THEN min(f.height) END AS complete_from,
        min(f.height) FILTER (WHERE f.utxo_count_total IS NOT NULL) AS utxo_set_from_height,
        min(f.height) FILTER (WHERE f.utxo_value_x_created_epoch IS NOT NULL) AS state_from,
        max(f.height) FILTER (WHERE f.utxo_value_x_created_epoch IS NOT NULL) AS state_through
    FROM core.btc_block_utxo_facts AS f
),

flows AS (
    SELECT
        max(b.height) FILTER (WHERE b.unknown) AS last_unknown,
        count(*) FILTER (WHERE b.unknown) AS unknown_n
    FROM core.btc_block_coin_age AS b
)

SELECT
    st.first_stored_height,
    st.tip_height,
    sd.height AS utxo_seed_height,
    sd.utxo_value_sat AS supply_seed_sat,
    st.supply_from_height,
    fa.utxo_set_from_height,
    CASE WHEN fa.complete_from IS NOT NULL THEN fa.state_from END AS state_complete_from_height,
    CASE WHEN fa.complete_from IS NOT NULL THEN fa.state_through END AS state_complete_through_height,
    CASE WHEN st.tip_height IS NOT NULL THEN coalesce(fl.last_unknown + 1, st.first_stored_height) END
        AS flows_complete_from_height,
    fl.unknown_n AS undated_flow_block_count
FROM stored AS st
CROSS JOIN facts AS fa
CROSS JOIN flows AS fl
LEFT JOIN core.btc_utxo_seed AS sd ON st.first_stored_height - 1 = sd.height;
COMMENT ON VIEW core.btc_coin_age_coverage IS 'From which height supply, UTXO set columns and coin-age metrics (state and flows) are complete.';

-- The read path: one row, GET /api/v1/btc/coin-age/coverage.
CREATE OR REPLACE VIEW api.btc_coin_age_coverage AS SELECT * FROM core.btc_coin_age_coverage;
COMMENT ON VIEW api.btc_coin_age_coverage IS 'From which height supply, UTXO set columns and coin-age metrics are complete (one row).';

GRANT SELECT ON api.btc_coin_age_coverage TO mqnode_reader;
