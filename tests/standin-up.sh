#!/usr/bin/env bash
# Brings up the AGLedger stand-in deployment the integration tests use:
# images (built offline), the local registry on 127.0.0.1:5000, and a
# bundled-mode install of project `opshost-test` on ports 24001/24002/24532.
# Prints the install directory. `tests/standin-up.sh down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${OPSHOST_TEST_STANDIN_DIR:-/tmp/opshost-test-standin}
project=opshost-test
if [ "${1:-}" = down ]; then
  tests/standin/down.sh "$dir" --project "$project" --purge >/dev/null 2>&1 || true
  exit 0
fi
docker info >/dev/null 2>&1 || { echo "the Docker Engine is not reachable: the container tests need it" >&2; exit 1; }
tests/standin/images/build-images.sh >&2
tests/standin/images/registry.sh start >&2
tests/standin/down.sh "$dir" --project "$project" --purge >/dev/null 2>&1 || true
tests/standin/up.sh "$dir" --project "$project" --api-port 24001 --worker-port 24002 --pg-port 24532 >&2
echo "$dir"
