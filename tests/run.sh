#!/usr/bin/env bash
# The whole test suite: builds the host and the plugins, then runs every
# unit and integration test against real files, a real HTTP server on
# 127.0.0.1, a real PostgreSQL 15 (tests/pg.sh) and the AGLedger stand-in
# in real containers on the Docker Engine (tests/standin-up.sh). Works on
# its own on a fresh machine (tests/setup.sh installs what is missing), and
# after tests/demo.sh: a running cluster is reused, the stand-in recreated.
# The cluster is left running (tests/pg.sh stop), the stand-in removed.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
tests/build-plugins.sh
# Real backends the tests talk to (pg.sh first: the external-mode stand-in
# keeps its database on that cluster).
OPSHOST_TEST_PG=$(tests/pg.sh start)
export OPSHOST_TEST_PG OPSHOST_TEST_PG_CA=${OPSHOST_PG_DIR:-/tmp/opshost-test-pg}/ca.crt
trap 'tests/standin-up.sh down' EXIT
OPSHOST_TEST_STANDIN=$(tests/standin-up.sh)
export OPSHOST_TEST_STANDIN OPSHOST_TEST_STANDIN_PROJECT=opshost-test
export OPSHOST_TEST_STANDIN_EXT=$OPSHOST_TEST_STANDIN-ext OPSHOST_TEST_STANDIN_EXT_PROJECT=opshost-ext
# The host, plus the unit tests of the plugins and the stand-in (native);
# --no-fail-fast: one failing test binary must not hide the others' results.
log=$(mktemp /tmp/opshost-tests.XXXXXX)
set +e
cargo test --release --no-fail-fast -p opshost -p agledger-ops -p opshost-sdk -p backup -p restore -p upgrade -p rollback -p rotate -p support-bundle -p doctor -p vault-scan -p agledger-standin "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One line for the whole run: cargo prints a result per test binary, and the
# last of them is a doc-test run with nothing in it.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
