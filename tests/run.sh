#!/usr/bin/env bash
# The whole test suite: builds the host and the plugins, then runs every
# unit and integration test (real files, a real HTTP server on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/build-plugins.sh
cargo test --release -p opshost "$@"
