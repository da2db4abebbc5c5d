#!/usr/bin/env bash
# The whole test suite: builds the host and the plugins, then runs every
# unit and integration test against real files, a real HTTP server on
# 127.0.0.1, a real PostgreSQL 15 (tests/pg.sh) and the AGLedger stand-in
# in real containers on the Docker Engine (tests/standin-up.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/build-plugins.sh
# Real backends the tests talk to.
OPSHOST_TEST_PG=$(tests/pg.sh start)
export OPSHOST_TEST_PG OPSHOST_TEST_PG_CA=${OPSHOST_PG_DIR:-/tmp/opshost-test-pg}/ca.crt
OPSHOST_TEST_STANDIN=$(tests/standin-up.sh)
export OPSHOST_TEST_STANDIN OPSHOST_TEST_STANDIN_PROJECT=opshost-test
export OPSHOST_TEST_STANDIN_EXT=$OPSHOST_TEST_STANDIN-ext OPSHOST_TEST_STANDIN_EXT_PROJECT=opshost-ext
trap 'tests/standin-up.sh down' EXIT
# The host, plus the unit tests of the plugins and the stand-in (native).
cargo test --release -p opshost -p agledger-ops -p backup -p restore -p vault-scan -p agledger-standin "$@"
