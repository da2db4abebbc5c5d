#!/usr/bin/env bash
# End-to-end check of the stand-in itself (not of opshost): build the images,
# bring a bundled install up, and exercise every fact the plugins rely on.
#
#   tests/standin/smoke.sh [--keep]      (--keep: leave the install up for a look)
#
# Uses host ports 23001 (api), 23002 (worker), 25432 (postgres), project
# agsmoke, a temp install directory. Needs docker, docker-compose, curl,
# python3, psql (postgresql-client-15) and what build-images.sh needs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
keep=0; [[ "${1:-}" == "--keep" ]] && keep=1
project=agsmoke api=http://127.0.0.1:23001 worker=http://127.0.0.1:23002
dir="$(mktemp -d /tmp/agledger-smoke.XXXXXX)"
env="$dir/compose/.env"
passed=0 failed=0

cleanup() {
  if [[ $keep -eq 1 ]]; then
    echo "kept: $dir (remove with: $here/down.sh $dir --project $project --purge)"
  else
    "$here/down.sh" "$dir" --project "$project" --purge >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
json() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v = v[int(k)] if isinstance(v, list) else v[k]
print(json.dumps(v) if isinstance(v, (list, dict)) else v)' "$1"; }
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
dc() { (cd "$dir/compose" && docker-compose -p "$project" "$@"); }
dotenv() { sed -n "s/^\(export \)\{0,1\}$1=\([^ #]*\).*/\2/p" "$env" | tr -d '"' | head -n1; }
set_env() {  # KEY VALUE: replace or append a plain KEY=VALUE line
  if grep -qE "^(export )?$1=" "$env"; then
    sed -i -E "s|^(export )?$1=[^ ]*|\1$1=$2|" "$env"
  else
    echo "$1=$2" >> "$env"
  fi
}
psql_db() { PGPASSWORD="$(dotenv POSTGRES_PASSWORD)" psql -h 127.0.0.1 -p 25432 -U agledger -d agledger -Atq -v ON_ERROR_STOP=1 "$@"; }
wait_health() {  # SERVICE STATUS SECONDS
  local id s
  for _ in $(seq 1 $(($3 * 2))); do
    id="$(dc ps -q "$1" | head -n1)"
    s="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null || true)"
    [[ "$s" == "$2" ]] && return 0
    sleep 0.5
  done
  return 1
}
auth() { curl -s -H "Authorization: Bearer $1" "$api/v1/auth/me"; }
scan() { curl -s -X POST -H "Authorization: Bearer $platform" "$api/v1/admin/vault/scan"; }

"$here/images/build-images.sh"
out="$("$here/up.sh" "$dir" --project "$project" --api-port 23001 --worker-port 23002 --pg-port 25432 \
        --seed "--mandates 3 --entries-per-mandate 5 --api-keys 3")"
echo "$out" | sed 's/^/  | /'
platform="$(cat "$dir/standin-platform-key")"
admin="$(echo "$out" | sed -n 's/^api-key=\([^ ]*\) role=admin.*/\1/p' | head -n1)"

echo "== endpoints"
check "/health is ok 1.3.2" [ "$(curl -s "$api/health" | json version)" = 1.3.2 ]
check "worker /health" [ "$(curl -s "$worker/health" | json status)" = ok ]
check "/health/ready 200" [ "$(code "$api/health/ready")" = 200 ]
check "/conformance knows migrations 1,2" [ "$(curl -s "$api/conformance" | json migrations)" = "[1, 2]" ]
check "/status counts 3 mandates" [ "$(curl -s "$api/status" | json mandates)" = 3 ]
check "/status of the worker says worker" [ "$(curl -s "$worker/status" | json role)" = worker ]
check "/metrics has vault entries" grep -q '^agledger_vault_entries_total 15$' <(curl -s "$api/metrics")
check "/v1/auth/me platform" [ "$(auth "$platform" | json role)" = platform ]
check "/v1/auth/me bad key 401" [ "$(code -H 'Authorization: Bearer agl_nope' "$api/v1/auth/me")" = 401 ]
check "scan needs platform (403)" [ "$(code -X POST -H "Authorization: Bearer $admin" "$api/v1/admin/vault/scan")" = 403 ]
check "scan without key (401)" [ "$(code -X POST "$api/v1/admin/vault/scan")" = 401 ]
check "scan: 15 entries, nothing broken" [ "$(scan | json scanned_entries)/$(scan | json broken_mandates)" = 15/0 ]
bundle="$(curl -s -H "Authorization: Bearer $platform" "$api/v1/admin/support-bundle")"
check "support bundle has names, never values" bash -c '[[ "$1" == *API_KEY_SECRET* && "$1" != *"$2"* ]]' _ "$bundle" "$(dotenv API_KEY_SECRET)"
check "preflight passes" dc run --rm --no-deps -T agledger-api preflight

echo "== vault tampering"
psql_db -c "UPDATE vault_entries SET payload = payload || ' ' WHERE chain_position = 2
            AND mandate_id = (SELECT min(mandate_id) FROM vault_entries)"
check "scan reports the altered entry" [ "$(scan | json broken_mandates)" = 1 ]
check "reason names the payload" bash -c '[[ "$(cat)" == *"payload altered"* ]]' < <(scan | json broken.0.reason)

echo "== migrations"
migrate_as() {  # VERSION: run the migrate role of that image; prints its output, keeps its exit code
  (cd "$dir/compose" && AGLEDGER_VERSION="$1" docker-compose -p "$project" run --rm --no-deps -T agledger-migrate 2>&1)
}
out="$(migrate_as 1.3.3)" && rc=0 || rc=$?
check "1.3.3 migrate applies 3" [ "$rc:$(grep -c 'applied 3 webhooks' <<<"$out")" = 0:1 ]
out="$(migrate_as 1.3.2)" && rc=0 || rc=$?
echo "$out" | grep 'agledger migrate' | sed 's/^/  | /' || true
check "1.3.2 migrate says downgrade refused" grep -q "downgrade refused" <<<"$out"
check "... and fails" [ "$rc" != 0 ]

echo "== API_KEY_SECRET rotation"
old="$(dotenv API_KEY_SECRET)" new="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
set_env API_KEY_SECRET_PREVIOUS "$old"; set_env API_KEY_SECRET "$new"
dc up -d --no-deps agledger-api agledger-worker >/dev/null 2>&1
wait_health agledger-api healthy 30 || true
check "old hash valid during rotation" [ "$(auth "$platform" | json role)" = platform ]
check "rehash-api-keys" dc run --rm --no-deps -T agledger-api rehash-api-keys
sed -i '/^API_KEY_SECRET_PREVIOUS=/d' "$env"
dc up -d --no-deps agledger-api >/dev/null 2>&1
wait_health agledger-api healthy 30 || true
check "key valid after rehash, previous removed" [ "$(auth "$platform" | json role)" = platform ]

echo "== broken release"
set_env AGLEDGER_VERSION 1.3.4
dc up -d --no-deps agledger-api >/dev/null 2>&1
never_healthy() { ! wait_health "$@"; }
check "1.3.4 never healthy" never_healthy agledger-api healthy 8
check "1.3.4 /health is 503 broken" [ "$(code "$api/health")" = 503 ]
set_env AGLEDGER_VERSION 1.3.2

echo "== graceful stop"
dc stop -t 10 agledger-worker >/dev/null 2>&1
check "worker exits 0 on SIGTERM" [ "$(docker inspect -f '{{.State.ExitCode}}' "$(dc ps -q agledger-worker)")" = 0 ]

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
