#!/usr/bin/env bash
# A first taste: build everything, bring up the AGLedger stand-in (real
# containers from a local registry, PostgreSQL in the project), then run
# backup -> restore -> vault-scan against it end to end, and show what was
# audited and what a missing grant looks like.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "### building opshost and the plugins (the first build takes several minutes)"
tests/build-plugins.sh 2>&1 | grep -E "^(error|warning)|Finished" || true
echo "### bringing up the AGLedger stand-in (project opshost-test, API on 127.0.0.1:24001)"
install=$(tests/standin-up.sh 2>/tmp/opshost-demo-standin.log) || { tail -20 /tmp/opshost-demo-standin.log; exit 1; }
echo "    install directory: $install (tests/standin-up.sh down removes it)"

demo=$(mktemp -d /tmp/opshost-demo.XXXXXX)
cat > "$demo/config.toml" <<TOML
# What the names in grants mean on this machine.
[dir.backups]
path = "$install/backup"
[containers.agledger]
project = "opshost-test"
[db.agledger]
env_file = "$install/compose/.env"   # bundled mode: POSTGRES_* from the install's .env
container = "agledger"               # the database runs in that project's postgres container
[http.api]
url = "http://127.0.0.1:24001"
[audit]
path = "audit.ndjson"
TOML
cat > "$demo/policy.toml" <<'TOML'
# What each plugin may touch: exactly what its manifest asks for.
[[plugin]]
vendor = "opshost"
name = "backup"
allow = ["db=agledger:admin", "fs=backups:rw", "http=api/health:GET"]
[[plugin]]
vendor = "opshost"
name = "restore"
allow = ["db=agledger:admin", "fs=backups:rw", "container=agledger:inspect,stop,start,run", "http=api/health:GET"]
[[plugin]]
vendor = "opshost"
name = "vault-scan"
allow = ["db=agledger:read"]
TOML
opshost() { target/release/opshost "$@"; }
plugins=target/wasm32-wasip2/release
run() { opshost run "$plugins/$1.wasm" --config "$demo/config.toml" --policy "$demo/policy.toml" "${@:2}"; }

echo
echo "### opshost inspect backup.wasm: what the plugin asks for"
opshost inspect "$plugins/backup.wasm"
echo
echo "### backup: pg_dump -Fc in the postgres container, vault keys, manifest -> backup-<ts>.tar.gz"
run backup
backup=$(ls "$install/backup" | grep '^backup-' | tail -1)
echo
echo "### what is inside $backup (plain tar reads it)"
tar tzvf "$install/backup/$backup"
echo
echo "### a change after the backup: one more mandate"
docker exec "$(docker ps -q --filter label=com.docker.compose.project=opshost-test --filter label=com.docker.compose.service=postgres)" \
  psql -U agledger -d agledger -qc "INSERT INTO mandates (id, title) VALUES ('mdt_demo_after_backup', 'made after the backup')"
echo
echo "### restore (--yes: no terminal to confirm on in a script): into a new database, verified, then swapped in"
run restore --yes -- "$backup"
echo
echo "### vault-scan of the restored database: every chain, every signature"
run vault_scan
echo
echo "### the last lines of the audit log ($demo/audit.ndjson)"
tail -5 "$demo/audit.ndjson"
echo
echo "### restore without its container grant is refused before it starts (exit 3):"
sed -i 's/"container=agledger:inspect,stop,start,run", //' "$demo/policy.toml"
set +e
run restore --yes -- "$backup"
echo "exit code: $?"
