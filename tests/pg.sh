#!/usr/bin/env bash
# A PostgreSQL 15 test cluster on 127.0.0.1 (the server refuses to run as
# root, so it runs as the `postgres` user). Password auth over TCP, TLS on
# with a self-signed certificate for "localhost".
#   tests/pg.sh start   -> prints the superuser URL
#   tests/pg.sh stop
set -euo pipefail
dir=${OPSHOST_PG_DIR:-/tmp/opshost-test-pg}
port=${OPSHOST_PG_PORT:-54329}
bin=/usr/lib/postgresql/15/bin
password=opshost-test
url="postgres://postgres:$password@127.0.0.1:$port/postgres"

case "${1:-start}" in
stop)
  [ -d "$dir/data" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

if runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  echo "$url"; exit 0
fi
rm -rf "$dir"
mkdir -p "$dir/sock"
chmod 755 "$dir"
# A test CA (ca.crt, what clients trust) and a server certificate it signed.
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=opshost test CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
  -extfile "$dir/server.ext" -out "$dir/server.crt" >/dev/null 2>&1
chmod 600 "$dir/server.key"
chown -R postgres:postgres "$dir"
runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  -E UTF8 --no-locale --no-sync >/dev/null
# Containers of an external-mode stand-in reach this cluster through the
# Docker bridge's gateway address: listen there too, and let them in.
listen=127.0.0.1
# The default bridge's gateway (docker0's address; the IPAM config often omits it).
gateway=$(ip -4 -o addr show docker0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1)
if [ -n "$gateway" ]; then
  listen="127.0.0.1,$gateway"
  # Compose networks get private subnets from Docker's pools (172.16/12,
  # 192.168/16, 10/8); samehost is the host itself via the gateway address.
  printf "host all all %s scram-sha-256\n" 172.16.0.0/12 192.168.0.0/16 10.0.0.0/8 samehost >> "$dir/data/pg_hba.conf"
fi
# Autovacuum made frequent and slow, as on a busy managed database: its
# workers sit in the databases that restores rename and drop.
autovacuum="-c autovacuum_naptime=1 -c autovacuum_vacuum_insert_threshold=1 -c autovacuum_vacuum_insert_scale_factor=0 -c autovacuum_vacuum_threshold=1 -c autovacuum_vacuum_scale_factor=0 -c autovacuum_analyze_threshold=1 -c autovacuum_analyze_scale_factor=0 -c autovacuum_vacuum_cost_delay=50"
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start \
  -o "-p $port -k $dir/sock -c listen_addresses=$listen -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key -c fsync=off $autovacuum" >/dev/null
runuser -u postgres -- "$bin/psql" -h "$dir/sock" -p "$port" -U postgres -qc "ALTER USER postgres PASSWORD '$password'" >/dev/null
echo "$url"
