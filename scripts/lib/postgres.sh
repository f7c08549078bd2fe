# Throwaway PostgreSQL and PgBouncer for tests and benchmarks (sourced by
# scripts/test, scripts/bench and scripts/bench-pooler). Data under /tmp,
# loopback ports, all stopped by `stop_throwaway` (call it from an EXIT trap).
#
# The fixed ports the scripts use (254xx, 264xx) lie below Linux's ephemeral
# range (32768-60999): a port in that range can be held at any moment by the
# local end of one of the tests' own connections, and CI once failed to
# start PostgreSQL on 55452 that way.
#
# PostgreSQL and PgBouncer both refuse to run as root: as root, their
# programs run as the postgres user.

THROWAWAY_DIR=""      # the last server's directory (PgBouncer goes there)
THROWAWAY_DIRS=()     # every directory to clean up

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

find_pg_bin() {
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
  else
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
  fi
}

# start_postgres PORT: a fresh server; sets PG_URL to its admin URL. Fails
# (status 1) when no initdb is installed.
start_postgres() {
  init_postgres || return 1
  run_postgres "$1" "-c listen_addresses=127.0.0.1"
  PG_URL="postgres://postgres@127.0.0.1:$1/postgres"
}

# start_tls_postgres PORT [also-plain]: a fresh server that accepts only
# TLS (pg_hba rejects plain connections; with `also-plain` it takes both, for
# the TLS benchmark), with a CA and a server certificate for the name
# `localhost` made now by the openssl CLI, and a second CA that signed
# nothing. Sets PG_TLS_URL (sslmode=verify-full, host localhost), TLS_CA,
# TLS_OTHER_CA and TLS_DIR.
start_tls_postgres() {
  local port=$1 plain=reject
  [ "${2:-}" = also-plain ] && plain=trust
  init_postgres || return 1
  TLS_DIR=$THROWAWAY_DIR/tls
  mkdir -p "$TLS_DIR"
  make_ca "$TLS_DIR/ca" "authsys test CA"
  make_ca "$TLS_DIR/other-ca" "authsys unrelated CA"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
    > "$TLS_DIR/server.ext"
  openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
    -CAcreateserial -days 2 -extfile "$TLS_DIR/server.ext" -out "$TLS_DIR/server.pem" 2>/dev/null
  chmod 600 "$TLS_DIR"/*.key
  cat > "$THROWAWAY_DIR/data/pg_hba.conf" <<HBA
local     all all              trust
hostssl   all all 127.0.0.1/32 trust
hostssl   all all ::1/128      trust
hostnossl all all 0.0.0.0/0    $plain
hostnossl all all ::/0         $plain
HBA
  [ "$(id -u)" = 0 ] && chown -R postgres "$THROWAWAY_DIR"
  chmod 755 "$THROWAWAY_DIR" "$TLS_DIR"
  chmod 644 "$TLS_DIR"/*.pem
  run_postgres "$port" "-c listen_addresses=localhost -c ssl=on \
    -c ssl_cert_file=$TLS_DIR/server.pem -c ssl_key_file=$TLS_DIR/server.key"
  TLS_CA=$TLS_DIR/ca.pem
  TLS_OTHER_CA=$TLS_DIR/other-ca.pem
  PG_TLS_URL="postgres://postgres@localhost:$port/postgres?sslmode=verify-full&sslrootcert=$TLS_CA"
}

# make_ca STEM NAME: a self-signed CA, STEM.pem and STEM.key.
make_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$2" -keyout "$1.key" -out "$1.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
}

# init_postgres: a new data directory (THROWAWAY_DIR), not yet running.
init_postgres() {
  local bin
  bin=$(find_pg_bin || true)
  [ -n "$bin" ] && [ -x "$bin/initdb" ] || return 1
  THROWAWAY_DIR=$(mktemp -d /tmp/authsys-pg.XXXXXX)
  THROWAWAY_DIRS+=("$THROWAWAY_DIR")
  [ "$(id -u)" = 0 ] && chown postgres "$THROWAWAY_DIR"
  as_pg "$bin/initdb" -D "$THROWAWAY_DIR/data" -U postgres --auth=trust >/dev/null
  PG_BIN=$bin
}

# run_postgres PORT OPTIONS: starts the server in THROWAWAY_DIR; when it
# does not start, shows why (its log, and who holds the port).
run_postgres() {
  if ! as_pg "$PG_BIN/pg_ctl" -D "$THROWAWAY_DIR/data" -l "$THROWAWAY_DIR/server.log" -w \
    -o "-p $1 -k $THROWAWAY_DIR -c max_connections=300 -c fsync=off $2" \
    start >/dev/null; then
    echo "PostgreSQL did not start on port $1; its log:" >&2
    tail -n 30 "$THROWAWAY_DIR/server.log" >&2 || true
    command -v ss >/dev/null 2>&1 && ss -ltnp 2>/dev/null | grep ":$1 " >&2
    return 1
  fi
}

# start_pgbouncer PG_PORT PORT [tls]: PgBouncer in transaction mode in
# front of the server on PG_PORT, every database name passed through; sets
# PGBOUNCER_URL. With `tls` (after start_tls_postgres): TLS on both legs,
# the server's certificate checked in full, clients offered the same
# certificate; PGBOUNCER_URL is then a verify-full URL.
# Fails (status 1) when pgbouncer is not installed.
start_pgbouncer() {
  local pg_port=$1 port=$2 tls=${3:-} exe dir server_host=127.0.0.1 tls_settings=""
  exe=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null || true)
  [ -n "$exe" ] || return 1
  if [ -z "$THROWAWAY_DIR" ]; then
    THROWAWAY_DIR=$(mktemp -d /tmp/authsys-pgb.XXXXXX)
    THROWAWAY_DIRS+=("$THROWAWAY_DIR")
  fi
  dir=$THROWAWAY_DIR/pgbouncer
  mkdir -p "$dir"
  echo '"postgres" ""' > "$dir/userlist.txt"
  if [ "$tls" = tls ]; then
    server_host=localhost
    tls_settings="client_tls_sslmode = require
client_tls_cert_file = $TLS_DIR/server.pem
client_tls_key_file = $TLS_DIR/server.key
server_tls_sslmode = verify-full
server_tls_ca_file = $TLS_CA"
  fi
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=$server_host port=$pg_port
[pgbouncer]
$tls_settings
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 20
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
  [ "$(id -u)" = 0 ] && chown -R postgres "$THROWAWAY_DIR"
  as_pg "$exe" -d "$dir/pgbouncer.ini"
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  PGBOUNCER_PID_FILES+=("$dir/pgbouncer.pid")
  PGBOUNCER_LOG=$dir/pgbouncer.log
  if [ "$tls" = tls ]; then
    PGBOUNCER_URL="postgres://postgres@localhost:$port/postgres?sslmode=verify-full&sslrootcert=$TLS_CA"
  else
    PGBOUNCER_URL="postgres://postgres@127.0.0.1:$port/postgres"
  fi
  # A pooler that did not come up, or cannot reach its server, would make
  # every test of the pass fail with 503 and say nothing of why: check one
  # query through it now, and show its log if that fails.
  local tries
  for tries in $(seq 20); do
    psql "$PGBOUNCER_URL" -Atc "SELECT 1" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "PgBouncer on port $port does not answer a query (after $tries tries); its log:" >&2
  tail -n 40 "$PGBOUNCER_LOG" >&2 || true
  return 1
}

# The tail of the last PgBouncer's log, after a failed pass.
pooler_log() {
  if [ -n "${PGBOUNCER_LOG:-}" ] && [ -f "$PGBOUNCER_LOG" ]; then
    echo "==> the last 60 lines of $PGBOUNCER_LOG" >&2
    tail -n 60 "$PGBOUNCER_LOG" >&2
  fi
}
PGBOUNCER_PID_FILES=()

stop_throwaway() {
  local pid_file dir
  for pid_file in "${PGBOUNCER_PID_FILES[@]}"; do
    [ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null || true
  done
  for dir in "${THROWAWAY_DIRS[@]}"; do
    if [ -d "$dir/data" ]; then
      as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
  done
}
