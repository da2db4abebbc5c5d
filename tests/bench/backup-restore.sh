#!/usr/bin/env bash
# Benchmark (not a test): backup and restore of a ~1 GB AGLedger database,
# each beside what an operator would otherwise run, in one run on this
# machine:
#   backup  / raw `pg_dump -Fc` of the same database
#   restore / raw single-stream `pg_restore --no-owner --no-acl` (the vendor
#             script's restore), and the pg_restore phase inside it alone
#   peak memory (max RSS) of the opshost process during both
#   vault-scan entries per second (a --full scan)
#   a second vault-scan of the unchanged vault / the first (the checkpoint
#             proves old entries by digest instead of signatures)
#   the whole restore of a backup taken over a verified vault (its manifest
#             carries the checkpoint) / raw single-stream `pg_restore`
# Uses an external-mode stand-in (project opshost-bench, ports 24021/24022)
# on the test cluster of tests/pg.sh, seeded until the database reaches
# BENCH_BYTES (default 1 GiB). Prints a markdown table (also written to
# target/bench-backup-restore.md). Needs tests/build-plugins.sh first.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
target_bytes=${BENCH_BYTES:-1073741824}
work=/tmp/opshost-bench
install=$work/install
project=opshost-bench
db=agledger_bench
export PGPASSWORD=opshost-test
pg_url="postgres://postgres@127.0.0.1:54329"
psql_q() { psql "$pg_url/${2:-postgres}" -qAtc "$1"; }
seconds() { python3 -c "import sys; print(f'{float(sys.argv[1]):.1f}')" "$1"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}x')" "$1" "$2"; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }

tests/pg.sh start >/dev/null
tests/standin/images/build-images.sh >/dev/null
tests/standin/images/registry.sh start >/dev/null
gateway=$(ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1 | head -1)
tests/standin/down.sh "$install" --project "$project" --purge >/dev/null 2>&1 || true
psql_q "DROP DATABASE IF EXISTS $db WITH (FORCE)"
psql_q "DROP DATABASE IF EXISTS ${db}_raw WITH (FORCE)"
psql_q "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'agledger_bench') THEN CREATE ROLE agledger_bench LOGIN CREATEDB PASSWORD 'bench-owner-pw'; END IF; END\$\$"
psql_q "CREATE DATABASE $db OWNER agledger_bench"
rm -rf "$work"; mkdir -p "$work"
tests/standin/up.sh "$install" --project "$project" --mode external \
  --database-url "postgres://agledger_bench:bench-owner-pw@$gateway:54329/$db?sslmode=prefer" \
  --api-port 24021 --worker-port 24022 >/dev/null

api=$(docker ps -q --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.service=agledger-api)
echo "seeding until $db reaches $((target_bytes >> 20)) MiB ..." >&2
while [ "$(psql_q "SELECT pg_database_size('$db')")" -lt "$target_bytes" ]; do
  docker exec "$api" /agledger seed --mandates 2000 --entries-per-mandate 100 --api-keys 0 >/dev/null
  echo "  $(psql_q "SELECT pg_size_pretty(pg_database_size('$db'))")" >&2
done
size=$(psql_q "SELECT pg_size_pretty(pg_database_size('$db'))")
entries=$(psql_q "SELECT count(*) FROM vault_entries" "$db")
psql_q "VACUUM ANALYZE" "$db"

cat > "$work/config.toml" <<TOML
[dir.backups]
path = "$install/backup"
[containers.agledger]
project = "$project"
[db.agledger]
env_file = "$install/compose/.env"
[http.api]
url = "http://127.0.0.1:24021"
[audit]
path = "$work/audit.ndjson"
TOML
cat > "$work/policy.toml" <<'TOML'
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
TOML
# Run a plugin; sets $wall (seconds) and $rss (peak resident KiB of the
# opshost process itself, VmHWM, sampled until it exits; the pg tools it
# starts are separate processes and not counted).
opshost() {
  local t0 pid hwm
  t0=$(now)
  "$root/target/release/opshost" run "$root/target/wasm32-wasip2/release/$1.wasm" \
    --config "$work/config.toml" --policy "$work/policy.toml" --json --timeout 2h "${@:2}" > "$work/out.ndjson" &
  pid=$!
  rss=0
  while kill -0 "$pid" 2>/dev/null; do
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$hwm" ] && rss=$hwm
    sleep 0.1
  done
  wait "$pid" || { tail -3 "$work/out.ndjson" >&2; exit 1; }
  wall=$(elapsed "$t0" "$(now)")
}
url="postgres://agledger_bench:bench-owner-pw@127.0.0.1:54329"

# Backup, twice each, interleaved (the page cache is warm for both).
declare -a raw_dump ops_backup ops_rss_b
for i in 1 2; do
  t0=$(now); pg_dump -Fc -d "$url/$db" -f "$work/raw.dump"; t1=$(now)
  raw_dump+=("$(elapsed "$t0" "$t1")")
  opshost backup -- --keep 1
  ops_backup+=("$wall"); ops_rss_b+=("$rss")
done
backup_file=$(ls "$install/backup" | grep '^backup-' | tail -1)
dump_size=$(stat -c %s "$work/raw.dump")
archive_size=$(stat -c %s "$install/backup/$backup_file")

# Restore: the vendor's single stream into a scratch database, then opshost's
# whole restore (check, extract, pg_restore -j 2, verify counts and every
# vault chain, swap, health) of the same data.
psql_q "CREATE DATABASE ${db}_raw OWNER agledger_bench"
t0=$(now); pg_restore --no-owner --no-acl -d "$url/${db}_raw" "$work/raw.dump"; t1=$(now)
raw_restore=$(elapsed "$t0" "$t1")
psql_q "DROP DATABASE ${db}_raw"
# Where the last backup's time went, from its audit lines.
phases=$(python3 -c "
import json, collections
runs = [json.loads(l) for l in open('$work/audit.ndjson')]
starts = [i for i, e in enumerate(runs) if e['verb'] == 'start' and e['plugin']['name'] == 'backup']
t = collections.defaultdict(float)
for e in runs[starts[-1]:]:
    t[e['capability'] + '.' + e['verb']] += e.get('duration_us', 0) / 1e6
print(', '.join(f'{k} {v:.1f} s' for k, v in sorted(t.items(), key=lambda kv: -kv[1]) if v >= 0.1))
")
: > "$work/audit.ndjson"
opshost restore -- "$backup_file" --yes --jobs 2
ops_restore=$wall; ops_rss_r=$rss
restore_phase=$(python3 -c "
import json,sys
for l in open('$work/audit.ndjson'):
    e=json.loads(l)
    if e.get('capability')=='db' and e.get('verb')=='restore': print(e['duration_us']/1e6)
")

# The restore wrote a checkpoint of what it verified: the first scan
# ignores it (--full), the second proves the unchanged vault by digest.
opshost vault_scan -- --full
scan=$wall; rss_scan=$rss
opshost vault_scan
scan2=$wall; rss_scan2=$rss
vault_facts() { python3 -c "
import json,sys
r=[json.loads(l) for l in open('$work/out.ndjson') if '\"event\":\"result\"' in l][-1]
d=r['data']; d=d.get('vault', d) if isinstance(d, dict) else json.loads(d)
print(d['proven_by_checkpoint'], d['signatures_verified'])
"; }
read -r scan2_proven scan2_signatures < <(vault_facts)

# A backup over the verified vault records the checkpoint; its restore's
# vault check proves the entries by digest against the restored database.
opshost backup -- --keep 1
covered_file=$(ls "$install/backup" | grep '^backup-' | tail -1)
opshost restore -- "$covered_file" --yes --jobs 2
covered_restore=$wall; rss_covered=$rss
read -r covered_proven covered_signatures < <(vault_facts)

best() { printf '%s\n' "$@" | sort -g | head -1; }
rd=$(best "${raw_dump[@]}"); ob=$(best "${ops_backup[@]}")
report=$(cat <<MD
Database: $size, $entries vault entries ($(nproc) cores, $(date -u +%Y-%m-%d)); dump $((dump_size >> 20)) MiB, archive $((archive_size >> 20)) MiB.

| what | opshost | baseline | ratio |
|---|---|---|---|
| backup (best of 2) | $(seconds "$ob") s | raw \`pg_dump -Fc\` $(seconds "$rd") s | $(ratio "$ob" "$rd") |
| restore, whole operation | $(seconds "$ops_restore") s | raw single-stream \`pg_restore\` $(seconds "$raw_restore") s | $(ratio "$ops_restore" "$raw_restore") |
| restore, the pg_restore -j 2 phase | $(seconds "$restore_phase") s | raw single-stream \`pg_restore\` $(seconds "$raw_restore") s | $(ratio "$restore_phase" "$raw_restore") |
| opshost peak RSS during backup / restore | $(( $(best "${ops_rss_b[@]}") / 1024 )) MiB / $((ops_rss_r / 1024)) MiB | | |
| vault-scan (--full) | $(seconds "$scan") s, $(python3 -c "print(int($entries/$scan))") entries/s, peak RSS $((rss_scan / 1024)) MiB | | |
| vault-scan, second of the unchanged vault | $(seconds "$scan2") s ($scan2_proven entries proven by the checkpoint, $scan2_signatures signatures verified), peak RSS $((rss_scan2 / 1024)) MiB | first (--full) scan $(seconds "$scan") s | $(ratio "$scan2" "$scan") |
| restore of a backup covered by a checkpoint, whole operation | $(seconds "$covered_restore") s ($covered_proven entries proven, $covered_signatures signatures verified), peak RSS $((rss_covered / 1024)) MiB | raw single-stream \`pg_restore\` $(seconds "$raw_restore") s | $(ratio "$covered_restore" "$raw_restore") |

Runs: raw pg_dump ${raw_dump[*]} s; opshost backup ${ops_backup[*]} s.
Last backup's host calls: $phases.
MD
)
echo "$report" | tee "$root/target/bench-backup-restore.md"
tests/standin/down.sh "$install" --project "$project" --purge >/dev/null 2>&1 || true
psql_q "DROP DATABASE IF EXISTS $db WITH (FORCE)"
