#!/bin/sh
# First start of the compose PostgreSQL: one role and one database per
# service (deploy/postgres/roles.sql). Passwords come from .env.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v auth_role=auth_service -v auth_db=auth -v auth_password="$AUTH_DB_PASSWORD" \
  -v main_role=main_backend -v main_db=main -v main_password="$MAIN_DB_PASSWORD" \
  -f /deploy/roles.sql
