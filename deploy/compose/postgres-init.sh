#!/bin/sh
# One role and one database per service, each owned by its role; PostgreSQL's image runs this
# once, on an empty data directory, as the superuser. Passwords come from the environment
# (<SERVICE>_DB_PASSWORD, from deploy/compose.env). The services make their own tables
# (Alembic, at start-up).
set -eu

for service in checkout entitlements accounts notifications; do
    variable="$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
    password="$(printenv "$variable" || true)"
    if [ -z "$password" ]; then
        echo "postgres-init: $variable is not set" >&2
        exit 1
    fi
    # psql's own quoting (:"name", :'password'), so that no value is pasted into SQL.
    psql --no-psqlrc --set ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
        --set name="$service" --set password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done
