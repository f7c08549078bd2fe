-- One role per service, each owning only its own database: the main
-- backend's role cannot even open the auth database, so "only the auth
-- service writes users, sessions and credentials" is a privilege of the
-- server, not only a convention of the code.
--
-- Run once, as a superuser (or a role with CREATEROLE and CREATEDB), with
-- psql, which runs each statement on its own:
--   psql -v ON_ERROR_STOP=1 \
--     -v auth_role=auth_service -v auth_db=auth -v auth_password="$AUTH_DB_PASSWORD" \
--     -v main_role=main_backend -v main_db=main -v main_password="$MAIN_DB_PASSWORD" \
--     -f deploy/postgres/roles.sql
-- docker-compose.yml runs it on the first start (docker/postgres-roles.sh);
-- launcher/tests/system/roles.rs runs this very file on the PostgreSQL pass.
--
-- Each service then connects as its role, applies its own migrations (it
-- owns its database, so it may create tables there) and owns what they
-- create. Nothing else is granted: no other role can connect, read or write.
CREATE ROLE :"auth_role" LOGIN PASSWORD :'auth_password';
CREATE ROLE :"main_role" LOGIN PASSWORD :'main_password';
CREATE DATABASE :"auth_db" OWNER :"auth_role";
CREATE DATABASE :"main_db" OWNER :"main_role";
-- Every new database grants CONNECT and TEMPORARY to PUBLIC, that is to
-- every role: take them back, so a role reaches only the database it owns.
REVOKE ALL ON DATABASE :"auth_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"main_db" FROM PUBLIC;
