#!/usr/bin/env bash
# A first taste: build everything, bring up the AGLedger stand-in (real
# containers from a local registry, PostgreSQL in the project), then run
# backup -> restore -> vault-scan -> upgrade 1.3.3 -> upgrade 1.3.4 (rolls
# itself back) -> rollback -> restore --test -> doctor -> rotate ->
# support-bundle against it end to end, and show what was
# audited and what a missing grant looks like. Works on its own on a fresh
# machine (tests/setup.sh installs what is missing); leaves the stand-in and
# the PostgreSQL test cluster running (how to remove them is printed at the
# end). Exits non-zero if any step does not go as shown (CI runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup.sh
echo "### building opshost and the plugins (the first build takes several minutes)"
build_log=/tmp/opshost-demo-build.log
set +e
tests/build-plugins.sh 2>&1 | tee "$build_log" | grep --line-buffered -E "^(error|warning)|Finished"
build=${PIPESTATUS[0]}
set -e
if [ "$build" -ne 0 ]; then
  tail -40 "$build_log"
  echo "error: the build failed (full log: $build_log)" >&2
  exit 1
fi
# The external-mode stand-in (project opshost-ext) keeps its database on the
# PostgreSQL 15 test cluster of tests/pg.sh: start it (a no-op if it runs).
export OPSHOST_PG_DIR=${OPSHOST_PG_DIR:-/tmp/opshost-test-pg} OPSHOST_PG_PORT=${OPSHOST_PG_PORT:-54329}
echo "### starting the PostgreSQL 15 test cluster (tests/pg.sh, 127.0.0.1:$OPSHOST_PG_PORT)"
tests/pg.sh start >/dev/null
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
version_from = { env_file = "$install/compose/.env" }   # plugins' applies_to is checked against AGLEDGER_VERSION
[db.agledger]
env_file = "$install/compose/.env"   # bundled mode: POSTGRES_* from the install's .env
container = "agledger"               # the database runs in that project's postgres container
[dir.compose]
path = "$install/compose"            # upgrade and rollback edit compose/.env
[dir.install]
path = "$install"                    # read-only: the VERSION file
[http.api]
url = "http://127.0.0.1:24001"
bearer_token_file = "$install/standin-platform-key"   # the platform key: sent by the host, never seen by a plugin
[dir.bundles]
path = "$demo/bundles"               # support bundles are written here
[dir.support]
path = "$demo/support"               # files an operator adds to a bundle (--include)
# Images run only if signed like the vendor's releases (cosign keyless);
# here a test CA stands in for Fulcio and a test key for Rekor.
[containers.agledger.signatures]
fulcio_roots = ["${OPSHOST_TEST_TRUST:-/tmp/opshost-test-trust}/fulcio-root.pem"]
rekor_keys = ["${OPSHOST_TEST_TRUST:-/tmp/opshost-test-trust}/rekor.pub"]
identity_regexp = '^https://github\.com/agledger-ai/agledger-api/\.github/workflows/.+@refs/tags/v.+$'
issuer = "https://token.actions.githubusercontent.com"
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
allow = ["db=agledger:read", "fs=backups:rw"]
[[plugin]]
vendor = "opshost"
name = "upgrade"
allow = ["db=agledger:admin", "fs=backups:rw", "fs=compose:rw", "fs=install:ro",
         "container=agledger:inspect,logs,stop,start,pull,recreate,run",
         "http=api/health:GET", "http=api/conformance:GET"]
[[plugin]]
vendor = "opshost"
name = "rollback"
allow = ["db=agledger:admin", "fs=backups:rw", "fs=compose:rw", "fs=install:ro",
         "container=agledger:inspect,logs,stop,start,pull,recreate,run",
         "http=api/health:GET", "http=api/conformance:GET"]
[[plugin]]
vendor = "opshost"
name = "doctor"
allow = ["db=agledger:read", "fs=compose:ro", "fs=backups:ro", "container=agledger:inspect,run",
         "http=api/health:GET", "http=api/conformance:GET"]
[[plugin]]
vendor = "opshost"
name = "rotate"
allow = ["fs=backups:rw", "fs=compose:rw", "container=agledger:logs,recreate,run", "db=agledger:read",
         "http=api/health:GET", "http=api/v1/auth/me:GET"]
[[plugin]]
vendor = "opshost"
name = "support-bundle"
allow = ["fs=compose:ro", "fs=support:ro", "fs=bundles:rw", "container=agledger:inspect,logs", "db=agledger:read",
         "http=api/health:GET", "http=api/conformance:GET", "http=api/status:GET", "http=api/v1/admin/support-bundle:GET"]
TOML
mkdir -p "$demo/bundles" "$demo/support"
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
version() { curl -s --max-time 5 http://127.0.0.1:24001/health; echo; }
echo "### upgrade --plan: what the upgrade would change, changing nothing (reads happen, changes are"
echo "### intercepted and answered with simulated results; the audit log says 'planned')"
run upgrade --plan -- 1.3.3
version
echo "### upgrade 1.3.2 -> 1.3.3: signed image verified and pinned by digest, pre-upgrade backup,"
echo "### migrations in a one-off container, .env edited, api then worker replaced, result checked"
run upgrade --yes -- 1.3.3
version
grep -E '^(AGLEDGER_VERSION|AGLEDGER_IMAGE_PIN)=' "$install/compose/.env"
echo
echo "### upgrade to 1.3.4, a release that never becomes healthy: it undoes itself (exit 1 expected)"
set +e
run upgrade --yes -- 1.3.4 --ready-within 15
failed=$?
set -e
echo "exit code: $failed"
[ "$failed" -eq 1 ] || { echo "error: expected the 1.3.4 upgrade to fail (exit 1)" >&2; exit 1; }
version
echo
echo "### rollback: the database of the pre-upgrade backup and 1.3.2's image, as one operation"
run rollback --yes
version
curl -s --max-time 5 http://127.0.0.1:24001/health | grep -q '"version":"1.3.2"' \
  || { echo "error: 1.3.2 is not serving after the rollback" >&2; exit 1; }
echo
echo "### restore --test: the monthly restore test into a scratch database; nothing running is touched"
run restore -- --test
echo
echo "### doctor: the troubleshooting runbook as checks with evidence and fix (0: all well, 6: findings)"
set +e
run doctor
doctor=$?
set -e
echo "exit code: $doctor"
[ "$doctor" -eq 0 ] || [ "$doctor" -eq 6 ] || { echo "error: the doctor did not complete" >&2; exit 1; }
echo
echo "### rotate api-key-secret: new secret from the host, both valid, every key rehashed, proven with the platform key"
run rotate --yes -- api-key-secret
echo
echo "### support-bundle: what the vendor's script collects, every file redacted, with a redaction report"
run support_bundle
bundle=$(ls "$demo/bundles" | grep '^support-bundle-' | tail -1)
tar tzf "$demo/bundles/$bundle"
tar xzOf "$demo/bundles/$bundle" --wildcards '*/redaction-report.txt' > "$demo/redaction-report.txt"
head -20 "$demo/redaction-report.txt"
echo
echo "### opshost audit: the audit log ($demo/audit.ndjson), filtered: what the upgrade's plan intercepted"
opshost audit --log "$demo/audit.ndjson" --mode plan --outcome planned --last 8
echo
echo "### opshost audit: the last calls of the run, as JSON for a SIEM pipeline"
opshost audit --log "$demo/audit.ndjson" --last 3 --json
echo
echo "### restore without its container grant is refused before it starts (exit 3):"
sed -i 's/"container=agledger:inspect,stop,start,run", //' "$demo/policy.toml"
set +e
run restore --yes -- "$backup"
refused=$?
set -e
echo "exit code: $refused"
[ "$refused" -eq 3 ] || { echo "error: expected exit code 3 (denied)" >&2; exit 1; }
echo
echo "### done. The stand-in and the PostgreSQL test cluster are still running:"
echo "    tests/standin-up.sh down   # removes both stand-in projects and $install"
echo "    tests/pg.sh stop           # stops the cluster"
