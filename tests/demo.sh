#!/usr/bin/env bash
# A first taste: build everything, bring up the AGLedger stand-in (real
# containers, a real registry, PostgreSQL in the project), then run the
# example operation against its API, show what it wrote and what was
# audited, and show the refusal when a grant is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "### building opshost and the plugins (the first build takes several minutes)"
tests/build-plugins.sh 2>&1 | grep -E "^(error|warning)|Finished" || true
echo "### bringing up the AGLedger stand-in (project opshost-test, API on 127.0.0.1:24001)"
install=$(tests/standin-up.sh 2>/tmp/opshost-demo-standin.log) || { tail -20 /tmp/opshost-demo-standin.log; exit 1; }
echo "    install directory: $install (tests/standin-up.sh down removes it)"

demo=$(mktemp -d /tmp/opshost-demo.XXXXXX)
mkdir -p "$demo/work"
cat > "$demo/config.toml" <<TOML
[dir.work]
path = "work"
[http.api]
url = "http://127.0.0.1:24001"
[audit]
path = "audit.ndjson"
TOML
cat > "$demo/policy.toml" <<'TOML'
[[plugin]]
vendor = "opshost"
name = "example"
allow = ["fs=work:rw", "http=api:GET"]
TOML

opshost=target/release/opshost
plugin=target/wasm32-wasip2/release/example.wasm
echo
echo "### opshost inspect $plugin"
$opshost inspect "$plugin"
echo
echo "### opshost run $plugin -- hello from the demo"
$opshost run "$plugin" --config "$demo/config.toml" --policy "$demo/policy.toml" -- hello from the demo
echo
echo "### what it wrote ($demo/work/health-report.txt)"
cat "$demo/work/health-report.txt"
echo
echo "### the audit log ($demo/audit.ndjson)"
cat "$demo/audit.ndjson"
echo
echo "### the same run without the fs grant is refused before it starts (exit 3):"
sed -i 's/"fs=work:rw", //' "$demo/policy.toml"
set +e
$opshost run "$plugin" --config "$demo/config.toml" --policy "$demo/policy.toml"
echo "exit code: $?"
set -e

echo
echo "### a real operation: vault-scan of the stand-in's bundled database"
cat >> "$demo/config.toml" <<TOML
[containers.agledger]
project = "opshost-test"
[db.agledger]
env_file = "$install/compose/.env"
container = "agledger"
TOML
cat >> "$demo/policy.toml" <<'TOML'
[[plugin]]
vendor = "opshost"
name = "vault-scan"
allow = ["db=agledger:read"]
TOML
$opshost run target/wasm32-wasip2/release/vault_scan.wasm --config "$demo/config.toml" --policy "$demo/policy.toml"
