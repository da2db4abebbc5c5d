#!/usr/bin/env bash
# The whole test suite: builds the host and the plugins, then runs every
# unit and integration test against real files, a real HTTP server on
# 127.0.0.1 and a real PostgreSQL 15 (started by tests/pg.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/build-plugins.sh
# Real backends the tests talk to.
OPSHOST_TEST_PG=$(tests/pg.sh start)
export OPSHOST_TEST_PG OPSHOST_TEST_PG_CA=${OPSHOST_PG_DIR:-/tmp/opshost-test-pg}/ca.crt
cargo test --release -p opshost "$@"
