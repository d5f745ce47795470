-- The API's method comparison: the canonical price of a bucket range under any composition method,
-- computed on request (core.btc_price_composition_10m), not stored. The reader role may call it, not the
-- core tables it reads (SECURITY DEFINER with a fixed search_path).

-- api.btc_price_composed_10m(p_method, p_from, p_to): buckets in [bucket of p_from, p_to] that have a
-- candidate market, with the columns of api.btc_price_canonical_10m; an unknown method gives no rows.
CREATE OR REPLACE FUNCTION api.btc_price_composed_10m(p_method text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
    bucket_start_utc timestamptz,
    source_count integer,
    source_names text[],
    composition_method text,
    open_price_usd numeric,
    high_price_usd numeric,
    low_price_usd numeric,
    close_price_usd numeric,
    volume_btc numeric,
    volume_usd numeric,
    excluded_sources jsonb,
    contributing_sources jsonb,
    usd_rates jsonb
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT
        c.bucket_start_utc,
        c.source_count,
        c.source_names,
        p_method,
        c.open_price_usd,
        c.high_price_usd,
        c.low_price_usd,
        c.close_price_usd,
        c.volume_btc,
        c.volume_usd,
        c.excluded_sources,
        c.contributing_sources,
        c.usd_rates
    FROM core.btc_price_composition_10m(p_method, core.bucket_10m(p_from), p_to) AS c
    WHERE p_method IN ('volume_weighted_ohlc_v1', 'median_filtered_v1', 'reference_rate_v1')
$$;
COMMENT ON FUNCTION api.btc_price_composed_10m(text, timestamptz, timestamptz) IS 'The canonical price of a range under one composition method, computed on request (method comparison).';
REVOKE ALL ON FUNCTION api.btc_price_composed_10m(text, timestamptz, timestamptz) FROM public;
GRANT EXECUTE ON FUNCTION api.btc_price_composed_10m(text, timestamptz, timestamptz) TO mqnode_reader;
