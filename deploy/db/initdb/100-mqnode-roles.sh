#!/usr/bin/env bash
# MQNODE's read-only login roles. The timescale/timescaledb image runs this once, on an empty data
# directory (/docker-entrypoint-initdb.d, as POSTGRES_USER in POSTGRES_DB, after its own TimescaleDB
# scripts), before the `migrate` service runs `mqnode db upgrade`:
#
#   mqnode_reader   NOLOGIN; SELECT on the api views (granted by the migration), nothing else
#   mqnode_api      LOGIN, IN ROLE mqnode_reader: the API's reads (MQNODE_API_DATABASE_URL)
#   mqnode_grafana  LOGIN, IN ROLE mqnode_reader: Grafana's datasource
#
# Both login roles default to read-only transactions; Grafana's queries are cut off after 60 s.
# Safe to re-run; a re-run also sets the passwords again. For a data volume created before this
# script existed, or to rotate the passwords after changing them in .env:
#   docker compose exec db bash /docker-entrypoint-initdb.d/100-mqnode-roles.sh
# The image's entrypoint sources *.sh files that are not executable: no `exit` and no `set -u` here.

: "${MQNODE_API_DB_PASSWORD:?MQNODE_API_DB_PASSWORD (password of the mqnode_api login role) is not set}"
: "${MQNODE_GRAFANA_DB_PASSWORD:?MQNODE_GRAFANA_DB_PASSWORD (password of the mqnode_grafana login role) is not set}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
    --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    --set api_password="$MQNODE_API_DB_PASSWORD" \
    --set grafana_password="$MQNODE_GRAFANA_DB_PASSWORD" <<'SQL'
SET client_min_messages = warning;

-- The group role; the migration creates it too when missing and grants it SELECT on the api views.
SELECT 'CREATE ROLE mqnode_reader NOLOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mqnode_reader')
\gexec

SELECT format('CREATE ROLE %I LOGIN IN ROLE mqnode_reader', login.rolname)
FROM (VALUES ('mqnode_api'), ('mqnode_grafana')) AS login (rolname)
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE pg_roles.rolname = login.rolname)
\gexec

-- Re-runs: whatever the roles were, they end up as described above.
ALTER ROLE mqnode_reader NOLOGIN;
ALTER ROLE mqnode_api LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'api_password';
ALTER ROLE mqnode_grafana LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'grafana_password';
GRANT mqnode_reader TO mqnode_api, mqnode_grafana;

ALTER ROLE mqnode_api SET default_transaction_read_only = on;
ALTER ROLE mqnode_grafana SET default_transaction_read_only = on;
ALTER ROLE mqnode_grafana SET statement_timeout = '60s';

COMMENT ON ROLE mqnode_api IS 'Login of the MQNODE API for its reads (MQNODE_API_DATABASE_URL); member of mqnode_reader.';
COMMENT ON ROLE mqnode_grafana IS 'Login of the Grafana datasource; member of mqnode_reader.';
SQL
