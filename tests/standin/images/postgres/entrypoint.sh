#!/bin/sh
# Entrypoint of agledger-standin/postgres:15 (test equipment, see ../../README.md).
# First start: initdb with POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB,
# password (SCRAM) authentication for TCP, trust on the container's own Unix
# socket (so `docker exec ... pg_dump -U $POSTGRES_USER` works like in the
# official image). Then exec postgres in the foreground as PID 1.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
sockdir=/var/run/postgresql

if [ "$(id -u)" = 0 ]; then
    echo "entrypoint: refusing to run as root (the image runs as uid 999 'postgres')" >&2
    exit 1
fi

if [ "${1:-postgres}" != "postgres" ]; then
    exec "$@"        # e.g. docker run IMAGE psql --version
fi
[ $# -gt 0 ] && shift

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "entrypoint: the database is not initialised and POSTGRES_PASSWORD is not set" >&2
        exit 1
    fi
    echo "entrypoint: initialising $PGDATA (superuser $user, database $db)"
    pwfile=/tmp/.pgpass-init
    umask 077
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a word list on purpose
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    umask 022
    {
        echo ""
        echo "# added by the agledger-standin entrypoint"
        echo "listen_addresses = '*'"
        echo "unix_socket_directories = '$sockdir'"
        echo "password_encryption = scram-sha-256"
        echo "jit = off                     # llvmjit is not in the image"
    } >> "$PGDATA/postgresql.conf"
    {
        echo "host all all 0.0.0.0/0 scram-sha-256"
        echo "host all all ::/0 scram-sha-256"
    } >> "$PGDATA/pg_hba.conf"

    # A temporary server on a private socket only: nothing (healthcheck
    # included) can reach it before the database exists.
    pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses='' -c unix_socket_directories=/tmp" start
    if [ "$db" != "postgres" ]; then
        case "$db" in
            *\"*) echo "entrypoint: POSTGRES_DB must not contain a double quote" >&2; exit 1 ;;
        esac
        psql -v ON_ERROR_STOP=1 -q -h /tmp -U "$user" -d postgres \
            -c "CREATE DATABASE \"$db\""
    fi
    pg_ctl -D "$PGDATA" -w -s -m fast stop
    echo "entrypoint: initialised"
fi

exec postgres -D "$PGDATA" "$@"
