#!/usr/bin/env bash
# Brings up the AGLedger stand-in deployments the integration tests use:
# images (built offline), the local registry on 127.0.0.1:5000, and two
# installs:
#   - bundled mode, project `opshost-test` (ports 24001/24002, postgres 24532),
#     in $OPSHOST_TEST_STANDIN_DIR (default /tmp/opshost-test-standin);
#   - external mode, project `opshost-ext` (ports 24011/24012), its database
#     `agledger_ext` on the test cluster of tests/pg.sh (which must be up),
#     in /tmp/opshost-test-standin-ext.
# Prints the bundled install directory. `tests/standin-up.sh down` removes both.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${OPSHOST_TEST_STANDIN_DIR:-/tmp/opshost-test-standin}
ext_dir=${dir}-ext
project=opshost-test
ext_project=opshost-ext
if [ "${1:-}" = down ]; then
  tests/standin/down.sh "$dir" --project "$project" --purge >/dev/null 2>&1 || true
  tests/standin/down.sh "$ext_dir" --project "$ext_project" --purge >/dev/null 2>&1 || true
  exit 0
fi
docker info >/dev/null 2>&1 || { echo "the Docker Engine is not reachable: the container tests need it" >&2; exit 1; }
# The external-mode install keeps its database on the test cluster of
# tests/pg.sh: check it runs before spending time on the rest.
pg_dir=${OPSHOST_PG_DIR:-/tmp/opshost-test-pg}
pg_port=${OPSHOST_PG_PORT:-54329}
psql() { runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -h "$pg_dir/sock" -p "$pg_port" -U postgres -qAt "$@"; }
psql -c "SELECT 1" >/dev/null 2>&1 || {
  echo "the PostgreSQL test cluster of tests/pg.sh is not running (port $pg_port, $pg_dir): the external-mode stand-in needs it; run tests/pg.sh start first" >&2
  exit 1
}
# The default bridge's gateway (docker0's address; the IPAM config often omits it).
gateway=$(ip -4 -o addr show docker0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1)
tests/standin/images/build-images.sh >&2
tests/standin/images/registry.sh start >&2
# Sign what was pushed as the vendor's release pipeline does (cosign
# keyless, the release workflow's identity for each tag), with a test trust
# root standing in for Fulcio and Rekor: configs with
# [containers.NAME.signatures] verify these (tests/image_trust.rs).
tests/standin/images/sign.sh init "${OPSHOST_TEST_TRUST:-/tmp/opshost-test-trust}"
tests/standin/images/sign.sh release "${OPSHOST_TEST_TRUST:-/tmp/opshost-test-trust}" 127.0.0.1:5000/agledger/agledger >&2
tests/standin/down.sh "$dir" --project "$project" --purge >/dev/null 2>&1 || true
tests/standin/up.sh "$dir" --project "$project" --api-port 24001 --worker-port 24002 --pg-port 24532 >&2

# External mode: an owner role and a fresh database on the test cluster.
tests/standin/down.sh "$ext_dir" --project "$ext_project" --purge >/dev/null 2>&1 || true
for db in $(psql -c "SELECT datname FROM pg_database WHERE datname LIKE 'agledger_ext%'"); do
  psql -c "DROP DATABASE \"$db\" WITH (FORCE)" >/dev/null
done
psql -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'agledger_ext') THEN CREATE ROLE agledger_ext LOGIN CREATEDB PASSWORD 'ext-owner-pw'; END IF; END\$\$" >/dev/null
psql -c "CREATE DATABASE agledger_ext OWNER agledger_ext" >/dev/null
tests/standin/up.sh "$ext_dir" --project "$ext_project" --mode external \
  --database-url "postgres://agledger_ext:ext-owner-pw@$gateway:$pg_port/agledger_ext?sslmode=prefer" \
  --api-port 24011 --worker-port 24012 >&2
echo "$dir"
