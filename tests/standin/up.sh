#!/usr/bin/env bash
# Lay out an AGLedger stand-in install directory and bring it up.
#
#   tests/standin/up.sh INSTALL_DIR [--project NAME] [--mode bundled|external]
#                       [--database-url URL] [--version V]
#                       [--api-port N] [--worker-port N] [--pg-port N]
#                       [--seed "--mandates 3 --entries-per-mandate 5 --api-keys 3"] [--no-seed]
#
# INSTALL_DIR gets the product's layout: compose/ (docker-compose.yml, the
# overlays, a generated .env with fresh secrets) and backup/. A re-run
# reuses an existing compose/.env (and its secrets).
#
#   --mode bundled   (default) PostgreSQL runs in the project (docker-compose.postgres.yml),
#                    published on 127.0.0.1:--pg-port (default 5432) for host-side tools.
#   --mode external  no postgres service; DATABASE_URL (--database-url, required) points at
#                    a PostgreSQL the containers can reach: one on this host is reached
#                    through the Docker bridge gateway, e.g.
#                    postgres://agledger:pw@172.17.0.1:5432/agledger?sslmode=prefer
#                    (it must listen on that address and pg_hba.conf must allow 172.16.0.0/12).
#
# Then: docker-compose -p NAME up -d, wait until agledger-api and
# agledger-worker are healthy, run the seed role once and print
# `platform-key=<key>` (also written to INSTALL_DIR/standin-platform-key).
# Needs the images from images/build-images.sh. Undo with down.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() { sed -n '2,24p' "$0"; exit 2; }
die() { echo "up.sh: $*" >&2; exit 1; }
log() { echo "==> $*"; }

[[ $# -ge 1 && "$1" != -* ]] || usage
install_dir="$1"; shift
project=agledger mode=bundled database_url="" version=1.3.2
api_port=3001 worker_port=3002 pg_port=5432
seed_args="--mandates 3 --entries-per-mandate 5 --api-keys 3" seed=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --project) project="${2:?}"; shift ;;
    --mode) mode="${2:?}"; shift ;;
    --database-url) database_url="${2:?}"; shift ;;
    --version) version="${2:?}"; shift ;;
    --api-port) api_port="${2:?}"; shift ;;
    --worker-port) worker_port="${2:?}"; shift ;;
    --pg-port) pg_port="${2:?}"; shift ;;
    --seed) seed_args="${2:?}"; shift ;;
    --no-seed) seed=0 ;;
    -h|--help) usage ;;
    *) die "unknown argument $1" ;;
  esac
  shift
done
case "$mode" in
  bundled) ;;
  external) [[ -n "$database_url" ]] || die "--mode external needs --database-url URL" ;;
  *) die "--mode is bundled or external" ;;
esac
[[ "$project" =~ ^[a-z0-9][a-z0-9_-]*$ ]] || die "--project must be lower case letters, digits, - and _"

command -v docker >/dev/null || die "docker is not installed"
command -v docker-compose >/dev/null || die "docker-compose is not installed (apt-get install -y docker-compose)"
docker image inspect "agledger/agledger:$version" >/dev/null 2>&1 \
  || die "image agledger/agledger:$version is missing: run tests/standin/images/build-images.sh"
if [[ "$mode" == bundled ]]; then
  docker image inspect agledger-standin/postgres:15 >/dev/null 2>&1 \
    || die "image agledger-standin/postgres:15 is missing: run tests/standin/images/build-images.sh"
fi

# ---------------------------------------------------------------- layout
mkdir -p "$install_dir/compose" "$install_dir/backup"
install_dir="$(cd "$install_dir" && pwd)"
compose="$install_dir/compose"
cp "$here/compose/docker-compose.yml" "$here/compose/docker-compose.postgres.yml" \
   "$here/compose/docker-compose.prod.yml" "$compose/"
env="$compose/.env"

# Replace the value of KEY on its (first, uncommented) line, keeping an
# `export ` prefix and any inline comment.
set_value() {
  local key="$1" value="$2" tmp
  tmp="$(mktemp "$compose/.env.XXXXXX")"
  KEY="$key" VALUE="$value" awk '
    BEGIN { key = ENVIRON["KEY"]; value = ENVIRON["VALUE"]; done = 0 }
    !done && match($0, "^[ \t]*(export[ \t]+)?" key "[ \t]*=") {
      prefix = substr($0, 1, RLENGTH); rest = substr($0, RLENGTH + 1)
      q = substr(rest, 1, 1); tail = ""
      if (q == "\"" || q == "\047") {
        i = index(substr(rest, 2), q)          # keep what follows the closing quote
        if (i > 0) tail = substr(rest, i + 2)
      } else {
        q = ""
        if (match(rest, /[ \t]+#.*$/)) tail = substr(rest, RSTART)
      }
      print prefix q value q tail; done = 1; next
    }
    { print }
    END { if (!done) print key "=" value }
  ' "$env" > "$tmp"
  chmod 600 "$tmp"
  mv "$tmp" "$env"
}

if [[ -f "$env" ]]; then
  log "reusing $env"
else
  log "writing $env with fresh secrets"
  cp "$here/compose/env.example" "$env"
  chmod 600 "$env"
  set_value AGLEDGER_VERSION "$version"
  set_value API_KEY_SECRET "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
  set_value POSTGRES_PASSWORD "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
  set_value VAULT_SIGNING_KEY "$(docker run --rm "agledger/agledger:$version" generate-signing-key)"
  set_value API_PORT "$api_port"
  set_value WORKER_PORT "$worker_port"
  if [[ "$mode" == bundled ]]; then
    set_value POSTGRES_PUBLISH_PORT "$pg_port"
  else
    set_value COMPOSE_FILE "docker-compose.yml:docker-compose.prod.yml"
    set_value DATABASE_URL "$database_url"
  fi
fi

# ---------------------------------------------------------------- up
dc() { (cd "$compose" && docker-compose -p "$project" "$@"); }
log "docker-compose -p $project up -d ($mode database, AGLedger $version)"
dc up -d

wait_healthy() {
  local service="$1" id status
  for _ in $(seq 1 120); do
    id="$(dc ps -q "$service" 2>/dev/null | head -n1)"
    if [[ -n "$id" ]]; then
      status="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")"
      [[ "$status" == healthy ]] && return 0
    fi
    sleep 0.5
  done
  echo "up.sh: $service did not become healthy (last status: ${status:-no container}); its last log lines:" >&2
  dc logs --tail 30 "$service" >&2 || true
  return 1
}
wait_healthy agledger-api
wait_healthy agledger-worker
log "agledger-api and agledger-worker are healthy: http://127.0.0.1:$(grep -E '^API_PORT=' "$env" | cut -d= -f2 | tr -d ' ')/health"

# ---------------------------------------------------------------- seed
if [[ $seed -eq 1 ]]; then
  log "seeding: agledger seed $seed_args"
  # shellcheck disable=SC2086 # seed_args is a word list on purpose
  out="$(dc run --rm --no-deps -T agledger-api seed $seed_args)" || { echo "$out" >&2; die "the seed failed"; }
  echo "$out"
  key="$(printf '%s\n' "$out" | sed -n 's/^platform-key=//p' | tr -d '\r' | head -n1)"
  if [[ -n "$key" ]]; then
    (umask 077; printf '%s\n' "$key" > "$install_dir/standin-platform-key")
    log "platform key written to $install_dir/standin-platform-key"
  fi
fi
log "up: project $project in $install_dir"
