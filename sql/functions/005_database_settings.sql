-- Database-level settings every MQNODE database carries, re-applied by every `alembic upgrade` (a database
-- restored or copied under another name loses ALTER DATABASE ... SET, which revisions 0001 and 0003 made).
--   search_path: analysts and dashboards use the public names (btc_primitive_10m, ...) unqualified;
--   timezone: every session sees times in UTC unless it chooses another.
-- Takes effect for new sessions. Re-runnable.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, raw, core, api', current_database());
    EXECUTE format('ALTER DATABASE %I SET timezone = ''UTC''', current_database());
END
$$;
