# Throwaway PostgreSQL and PgBouncer for tests and benchmarks (sourced by
# scripts/test and scripts/bench-pooler). Data under /tmp, loopback ports,
# stopped by `stop_throwaway` (call it from an EXIT trap).
#
# PostgreSQL and PgBouncer both refuse to run as root: as root, their
# programs run as the postgres user.

THROWAWAY_DIR=""

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
  local port=$1 bin
  bin=$(find_pg_bin || true)
  [ -n "$bin" ] && [ -x "$bin/initdb" ] || return 1
  THROWAWAY_DIR=$(mktemp -d /tmp/authsys-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres "$THROWAWAY_DIR"
  as_pg "$bin/initdb" -D "$THROWAWAY_DIR/data" -U postgres --auth=trust >/dev/null
  as_pg "$bin/pg_ctl" -D "$THROWAWAY_DIR/data" -l "$THROWAWAY_DIR/server.log" -w \
    -o "-p $port -k $THROWAWAY_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" \
    start >/dev/null
  PG_BIN=$bin
  PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

# start_pgbouncer PG_PORT PORT: PgBouncer in transaction mode in front of
# the server on PG_PORT, every database name passed through; sets
# PGBOUNCER_URL.
# Fails (status 1) when pgbouncer is not installed.
start_pgbouncer() {
  local pg_port=$1 port=$2 exe dir
  exe=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null || true)
  [ -n "$exe" ] || return 1
  dir=${THROWAWAY_DIR:-$(mktemp -d /tmp/authsys-pgb.XXXXXX)}/pgbouncer
  THROWAWAY_DIR=${THROWAWAY_DIR:-$(dirname "$dir")}
  mkdir -p "$dir"
  echo '"postgres" ""' > "$dir/userlist.txt"
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$pg_port
[pgbouncer]
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
  PGBOUNCER_PID_FILE=$dir/pgbouncer.pid
  PGBOUNCER_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_throwaway() {
  if [ -n "${PGBOUNCER_PID_FILE:-}" ] && [ -f "$PGBOUNCER_PID_FILE" ]; then
    kill "$(cat "$PGBOUNCER_PID_FILE")" 2>/dev/null || true
  fi
  if [ -n "$THROWAWAY_DIR" ]; then
    if [ -d "$THROWAWAY_DIR/data" ]; then
      as_pg "$PG_BIN/pg_ctl" -D "$THROWAWAY_DIR/data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$THROWAWAY_DIR"
  fi
}
