#!/usr/bin/env bash
# A real PgBouncer (Debian's package) in front of the PostgreSQL 15 test
# cluster (tests/pg.sh, 127.0.0.1:54329), for the doctor's pooler check.
# It runs as the unprivileged `postgres` user (PgBouncer refuses root).
#   tests/pgbouncer.sh start MODE PORT USER:PASSWORD...   MODE: transaction | session
#   tests/pgbouncer.sh stop PORT
# Clients log in with SCRAM as USER/PASSWORD; PgBouncer logs in to the
# server with the same (plain passwords in its auth_file, test only).
set -euo pipefail
cmd=${1:-}
case "$cmd" in
start) [ $# -ge 4 ] || { echo "usage: $0 start transaction|session PORT USER:PASSWORD..." >&2; exit 2; }
       mode=$2; port=$3; shift 3 ;;
stop)  [ $# -eq 2 ] || { echo "usage: $0 stop PORT" >&2; exit 2; }
       port=$2 ;;
*) echo "usage: $0 start MODE PORT USER:PASSWORD... | stop PORT" >&2; exit 2 ;;
esac
dir=/tmp/opshost-test-pgbouncer-$port
pg_port=${OPSHOST_PG_PORT:-54329}

if [ "$cmd" = stop ]; then
  if [ -f "$dir/pgbouncer.pid" ]; then
    kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
    for _ in $(seq 50); do [ -f "$dir/pgbouncer.pid" ] || break; sleep 0.1; done
  fi
  rm -rf "$dir"
  exit 0
fi
case "$mode" in transaction|session) ;; *) echo "mode: transaction or session" >&2; exit 2 ;; esac
command -v pgbouncer >/dev/null || { echo "pgbouncer is not installed (tests/setup.sh installs it)" >&2; exit 1; }
"$0" stop "$port"
mkdir -p "$dir"
: > "$dir/userlist.txt"
for pair in "$@"; do
  printf '"%s" "%s"\n' "${pair%%:*}" "${pair#*:}" >> "$dir/userlist.txt"
done
cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$pg_port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = $mode
default_pool_size = 2
max_client_conn = 100
server_tls_sslmode = prefer
ignore_startup_parameters = extra_float_digits
pidfile = $dir/pgbouncer.pid
logfile = $dir/pgbouncer.log
INI
chown -R postgres:postgres "$dir"
chmod 700 "$dir"
runuser -u postgres -- pgbouncer -d "$dir/pgbouncer.ini"
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && exit 0
  sleep 0.1
done
echo "pgbouncer did not start listening on 127.0.0.1:$port:" >&2
cat "$dir/pgbouncer.log" >&2 || true
exit 1
