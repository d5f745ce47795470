-- The read path of the coin-age metrics (085_coin_age_metrics.sql): one api view per metric table, as 090
-- has for the other metrics (the registry's output_table names them; GET /api/v1/btc/metrics/{metric}
-- serves any registered metric whose output_table is such a view). The backbone's UTXO columns
-- (utxo_count_total, utxo_size_inc_bytes_10m, utxo_set_size_total_bytes) are in api.btc_primitive_10m
-- (SELECT * of core.btc_primitive_10m, re-created by 090 on every upgrade).

-- api fields of core.btc_realized_cap_{10m,1h,24h} by core.metric_realized_cap: *
CREATE OR REPLACE VIEW api.btc_realized_cap_10m AS SELECT * FROM core.btc_realized_cap_10m;
CREATE OR REPLACE VIEW api.btc_realized_cap_1h AS SELECT * FROM core.btc_realized_cap_1h;
CREATE OR REPLACE VIEW api.btc_realized_cap_24h AS SELECT * FROM core.btc_realized_cap_24h;

-- api fields of core.btc_sopr_{10m,1h,24h} by core.metric_sopr: *
CREATE OR REPLACE VIEW api.btc_sopr_10m AS SELECT * FROM core.btc_sopr_10m;
CREATE OR REPLACE VIEW api.btc_sopr_1h AS SELECT * FROM core.btc_sopr_1h;
CREATE OR REPLACE VIEW api.btc_sopr_24h AS SELECT * FROM core.btc_sopr_24h;

-- api fields of core.btc_coin_days_{10m,1h,24h} by core.metric_coin_days: *
CREATE OR REPLACE VIEW api.btc_coin_days_10m AS SELECT * FROM core.btc_coin_days_10m;
CREATE OR REPLACE VIEW api.btc_coin_days_1h AS SELECT * FROM core.btc_coin_days_1h;
CREATE OR REPLACE VIEW api.btc_coin_days_24h AS SELECT * FROM core.btc_coin_days_24h;

-- api fields of core.btc_holder_supply_24h by core.metric_holder_supply: *
CREATE OR REPLACE VIEW api.btc_holder_supply_24h AS SELECT * FROM core.btc_holder_supply_24h;

-- HODL waves: the table's columns (utxo_value_sat and supply_<band>_sat, bands in age order), then each
-- band's share of the day's UTXO value, supply_<band>_share = core.share(band, utxo_value_sat) (a fraction
-- with 8 decimals; NULL where the day's state is unknown or the set is empty). One row per day, so the
-- route pages it by bucket_start_utc like every other series.
-- api fields of core.btc_supply_age_bands_24h by core.metric_supply_age_bands: *
-- api fields of api.btc_supply_age_bands_24h: supply_lt_1d_share, supply_1d_1w_share, supply_1w_1m_share,
--     supply_1m_3m_share, supply_3m_6m_share, supply_6m_12m_share, supply_1y_2y_share, supply_2y_3y_share,
--     supply_3y_5y_share, supply_5y_7y_share, supply_7y_10y_share, supply_gt_10y_share
CREATE OR REPLACE VIEW api.btc_supply_age_bands_24h AS
SELECT
    b.*,
    core.share(b.supply_lt_1d_sat, b.utxo_value_sat) AS supply_lt_1d_share,
    core.share(b.supply_1d_1w_sat, b.utxo_value_sat) AS supply_1d_1w_share,
    core.share(b.supply_1w_1m_sat, b.utxo_value_sat) AS supply_1w_1m_share,
    core.share(b.supply_1m_3m_sat, b.utxo_value_sat) AS supply_1m_3m_share,
    core.share(b.supply_3m_6m_sat, b.utxo_value_sat) AS supply_3m_6m_share,
    core.share(b.supply_6m_12m_sat, b.utxo_value_sat) AS supply_6m_12m_share,
    core.share(b.supply_1y_2y_sat, b.utxo_value_sat) AS supply_1y_2y_share,
    core.share(b.supply_2y_3y_sat, b.utxo_value_sat) AS supply_2y_3y_share,
    core.share(b.supply_3y_5y_sat, b.utxo_value_sat) AS supply_3y_5y_share,
    core.share(b.supply_5y_7y_sat, b.utxo_value_sat) AS supply_5y_7y_share,
    core.share(b.supply_7y_10y_sat, b.utxo_value_sat) AS supply_7y_10y_share,
    core.share(b.supply_gt_10y_sat, b.utxo_value_sat) AS supply_gt_10y_share
FROM core.btc_supply_age_bands_24h AS b;
COMMENT ON VIEW api.btc_supply_age_bands_24h IS
'HODL waves: UTXO value at the end of each UTC day by age band (sat) and each band''s share of it.';

GRANT SELECT ON ALL TABLES IN SCHEMA api TO mqnode_reader;
