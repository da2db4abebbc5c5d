#!/usr/bin/env bash
# Benchmark (not a test): AGLedger 1.3.2 -> 1.3.3 on the same stand-in, in
# one run, opshost's upgrade beside the vendor's flow, with a prober
# (tests/bench/prober.py) hitting /health every 50 ms (each probe on its own
# thread, 1 s timeout) on the API's and the worker's host ports and on each
# container's own address on the project network:
#   vendor: pre-upgrade backup (pg_dump -Fc inside the postgres container +
#           vault keys CSV, tar.gz), pull, AGLEDGER_VERSION by sed,
#           `docker-compose stop agledger-worker`, `docker-compose run --rm
#           agledger-migrate`, `docker-compose up -d agledger-api
#           agledger-worker`, its preflight wait loop (docker inspect health
#           every 5 s, up to 60 s), preflight, /health version check.
#   opshost: `opshost run --yes upgrade.wasm ... --json -- 1.3.3`, its step
#           events time-stamped as they arrive.
#   opshost again with agledger-worker scaled to 2 containers (WORKER_PORT
#           a host port range): is some worker answering at every sample?
# All three with the stand-in's 1 s Docker healthcheck interval, then again
# with 15 s (a compose overlay; the interval of the issue's real run), as
# BENCH_INTERVALS="1s 15s" says. Each run starts from a fresh, healthy 1.3.2
# install seeded with 50 mandates x 20 entries. Own install: project
# opshost-bench-up in /tmp/opshost-bench-up, ports 25001/25002(-25003)/25532,
# removed at the end (BENCH_KEEP=1 keeps it). About 7 minutes.
# Prints markdown tables (also target/bench-upgrade.md; the figures as JSON
# in target/bench-upgrade.json). Needs the release host binary and
# tests/build-plugins.sh first, the images and the signed local registry
# (tests/standin/images/build-images.sh, registry.sh start) and the keyless
# trust root in $OPSHOST_TEST_TRUST (default /tmp/opshost-test-trust).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
install=/tmp/opshost-bench-up
work=$install/bench
project=opshost-bench-up
compose=$install/compose
trust=${OPSHOST_TEST_TRUST:-/tmp/opshost-test-trust}
intervals=${BENCH_INTERVALS:-1s 15s}
api_url=http://127.0.0.1:25001
worker_url=http://127.0.0.1:25002
seed_args="--mandates 50 --entries-per-mandate 20 --api-keys 3"
prober=$root/tests/bench/prober.py
now() { date +%s.%N; }
log() { echo "== $*" >&2; }
dc() { (cd "$compose" && docker-compose -p "$project" "$@"); }
service_ids() { docker ps -q --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1"; }

for f in target/release/opshost target/wasm32-wasip2/release/upgrade.wasm; do
  [ -e "$f" ] || { echo "missing $f: build the host and run tests/build-plugins.sh" >&2; exit 1; }
done
tests/standin/images/build-images.sh >/dev/null
tests/standin/images/registry.sh start >/dev/null

prober_pid=""
cleanup() {
  [ -n "$prober_pid" ] && kill "$prober_pid" 2>/dev/null || true
  if [ -z "${BENCH_KEEP:-}" ]; then
    tests/standin/down.sh "$install" --project "$project" --purge >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
tests/standin/down.sh "$install" --project "$project" --purge >/dev/null 2>&1 || true

# The host and plugin as they are now (others may rebuild target/ meanwhile).
mkdir -p "$work/bin"
cp target/release/opshost target/wasm32-wasip2/release/upgrade.wasm "$work/bin/"
build="$(git rev-parse --short HEAD)$(git diff --quiet -- host plugins wit 2>/dev/null || echo ' + uncommitted changes in the work tree'), opshost built $(date -u -r target/release/opshost +%H:%MZ), upgrade.wasm $(date -u -r target/wasm32-wasip2/release/upgrade.wasm +%H:%MZ)"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# fresh_install WORKERS INTERVAL: a healthy, seeded 1.3.2.
fresh_install() {
  tests/standin/down.sh "$install" --project "$project" >/dev/null 2>&1 || true
  rm -rf "$compose" "$install/backup"
  tests/standin/up.sh "$install" --project "$project" --api-port 25001 --worker-port 25002 \
    --pg-port 25532 --seed "$seed_args" >/dev/null
  local again=0
  if [ "$1" -gt 1 ]; then
    # The worker publishes a fixed host port: a range lets replicas coexist.
    sed -i 's/^WORKER_PORT=.*/WORKER_PORT=25002-25003/' "$compose/.env"
    again=1
  fi
  if [ "$2" != 1s ]; then
    printf 'services:\n  agledger-api:\n    healthcheck:\n      interval: %s\n  agledger-worker:\n    healthcheck:\n      interval: %s\n' \
      "$2" "$2" > "$compose/docker-compose.bench-healthcheck.yml"
    sed -i 's/^COMPOSE_FILE=.*/&:docker-compose.bench-healthcheck.yml/' "$compose/.env"
    again=1
  fi
  [ "$again" = 1 ] && dc up -d --scale agledger-worker="$1" >/dev/null 2>&1
  local ids healthy
  for _ in $(seq 240); do
    healthy=1
    ids=$(docker ps -q --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.oneoff=False)
    for id in $ids; do
      [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")" = healthy ] || healthy=0
    done
    [ "$healthy" = 1 ] && [ "$(echo "$ids" | wc -w)" -eq $((2 + $1)) ] && break
    sleep 0.5
  done
  [ "$healthy" = 1 ] || { echo "the fresh install did not become healthy" >&2; exit 1; }
  curl -sf "$api_url/health" | grep -q '"1.3.2"' || { echo "the fresh install does not serve 1.3.2" >&2; exit 1; }
  [ "$(docker exec "$(service_ids postgres)" psql -U agledger -d agledger -qAtc 'SELECT count(*) FROM vault_entries')" = 1000 ] \
    || { echo "the fresh install is not seeded as expected" >&2; exit 1; }
  local hc
  hc=$(docker inspect -f '{{.Config.Healthcheck.Interval}}' "$(service_ids agledger-worker | head -1)")
  [ "$hc" = "$2" ] || { echo "healthcheck interval $hc, not $2" >&2; exit 1; }
}

start_prober() {  # $1 = name
  rm -f "$work/$1.ready"
  python3 "$prober" run --out "$work/$1.samples" --interval 0.05 --timeout 1 \
    --target "api=$api_url/health" --target "worker=$worker_url/health" \
    --project "$project" --service agledger-api=3000 --service agledger-worker=3001 \
    --ready-file "$work/$1.ready" &
  prober_pid=$!
  while [ ! -e "$work/$1.ready" ]; do sleep 0.05; done
  sleep 1  # a second of baseline: every target answers before the run
}
stop_prober() { sleep 1; kill -TERM "$prober_pid"; wait "$prober_pid" || true; prober_pid=""; }
# summary NAME FROM TO ORIGIN -> JSON
summary() { python3 "$prober" summary "$work/$1.samples" --from "$2" --to "$3" --origin "$4"; }
# result NAME KEY=VALUE... (numbers or JSON) -> $work/NAME.result.json
result() {
  python3 - "$work/$1.result.json" "${@:2}" <<'PY'
import json, sys
out = {}
for kv in sys.argv[2:]:
    k, _, v = kv.partition("=")
    try:
        out[k] = json.loads(v)
    except ValueError:
        out[k] = v
json.dump(out, open(sys.argv[1], "w"))
PY
}
d() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$1" "$2"; }

# ---------------------------------------------------------------- vendor
# vendor_flow NAME
vendor_flow() {
  local ts dir status all id
  t_start=$(now)
  # Pre-upgrade backup as the vendor's backup.sh does it (bundled mode).
  ts=$(date -u +%Y-%m-%d-%H%M%S); dir="$install/backup/$ts"; mkdir -p "$dir"
  dc exec -T postgres pg_dump -U agledger -Fc agledger > "$dir/db.dump"
  dc exec -T postgres psql -U agledger -d agledger -c "\\copy vault_signing_keys TO STDOUT WITH CSV HEADER" > "$dir/vault-public-keys.csv"
  tar -C "$install/backup" -czf "$install/backup/backup-$ts.tar.gz" "$ts" && rm -rf "$dir"
  echo 1.3.2 > "$install/backup/.pre-upgrade-version"
  t_backup=$(now)
  # Pull the target (the vendor then runs cosign verify: no cosign here).
  docker pull -q 127.0.0.1:5000/agledger/agledger:1.3.3 >/dev/null
  t_pull=$(now)
  sed -i 's/^AGLEDGER_VERSION=.*/AGLEDGER_VERSION=1.3.3/' "$compose/.env"
  dc stop agledger-worker 2>/dev/null
  t_stop=$(now)
  dc run --rm agledger-migrate >/dev/null 2>&1
  t_migrate=$(now)
  dc up -d agledger-api agledger-worker 2>/dev/null
  t_up=$(now)
  # The vendor's preflight wait loop: health via docker inspect, every 5 s, up to 60 s.
  local polls=0
  for _ in $(seq 12); do
    polls=$((polls + 1))
    all=1
    for s in agledger-api agledger-worker; do
      for id in $(service_ids "$s"); do
        status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null || true)
        [ "$status" = healthy ] || all=0
      done
    done
    [ "$all" = 1 ] && break
    sleep 5
  done
  [ "$all" = 1 ] || { echo "vendor flow: not healthy within 60 s" >&2; exit 1; }
  t_healthy=$(now)
  dc run --rm --no-deps -T agledger-api preflight >/dev/null 2>&1 || { echo "vendor flow: preflight failed" >&2; exit 1; }
  t_preflight=$(now)
  curl -sf "$api_url/health" | grep -q '"version":"1.3.3"' || { echo "vendor flow: /health does not report 1.3.3" >&2; exit 1; }
  t_end=$(now)
  local phases
  phases="pull $(d "$t_backup" "$t_pull") s, stop worker $(d "$t_pull" "$t_stop") s, migrate $(d "$t_stop" "$t_migrate") s, \`up -d\` $(d "$t_migrate" "$t_up") s, wait loop $(d "$t_up" "$t_healthy") s ($polls polls), preflight $(d "$t_healthy" "$t_preflight") s, version check $(d "$t_preflight" "$t_end") s"
  result "$1" whole="$(d "$t_start" "$t_end")" backup="$(d "$t_start" "$t_backup")" after="$(d "$t_backup" "$t_end")" \
    phases="$phases" probe="$(summary "$1" "$t_start" "$t_end" "$t_start")"
}

# ---------------------------------------------------------------- opshost
write_config() {
  cat > "$work/config.toml" <<TOML
[dir.backups]
path = "$install/backup"
[dir.compose]
path = "$compose"
[dir.install]
path = "$install"
[containers.agledger]
project = "$project"
[containers.agledger.signatures]
fulcio_roots = ["$trust/fulcio-root.pem"]
rekor_keys = ["$trust/rekor.pub"]
identity_regexp = '^https://github\\.com/agledger-ai/agledger-api/\\.github/workflows/.+@refs/tags/v.+\$'
issuer = "https://token.actions.githubusercontent.com"
[db.agledger]
env_file = "$compose/.env"
container = "agledger"
[http.api]
url = "$api_url"
[audit]
path = "$work/audit.ndjson"
TOML
  cat > "$work/policy.toml" <<'TOML'
[[plugin]]
vendor = "opshost"
name = "upgrade"
allow = ["db=agledger:admin", "fs=backups:rw", "fs=compose:rw", "fs=install:ro",
         "container=agledger:inspect,logs,stop,start,pull,recreate,run",
         "http=api/health:GET", "http=api/conformance:GET"]
TOML
}

# opshost_flow NAME: runs the upgrade with its events time-stamped as they
# arrive; sets t_start t_end, t_backup (the backup step) t_after (the first
# step after the backup), t_api, t_worker, t_check and o_steps (each step's time).
opshost_flow() {
  local rc steps
  set +e
  python3 "$prober" stamp "$work/bin/opshost" run --yes "$work/bin/upgrade.wasm" --config "$work/config.toml" \
    --policy "$work/policy.toml" --json --timeout 15m -- 1.3.3 > "$work/$1.events"
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    echo "opshost upgrade failed (exit $rc):" >&2; tail -5 "$work/$1.events" >&2; exit 1
  fi
  curl -sf "$api_url/health" | grep -q '"version":"1.3.3"' || { echo "opshost: /health does not report 1.3.3" >&2; exit 1; }
  steps=$(python3 - "$work/$1.events" <<'PY'
import json, sys
# The backup's own steps (agledger-ops backup) belong to the backup.
BACKUP = ("checking the backup directory", "reading row counts", "dumping the database", "packing ", "applying retention")
events = [json.loads(l) for l in open(sys.argv[1])]
start = events[0]["t"]; end = events[-1]["t"]
steps = []
for e in events[1:-1]:
    ev = json.loads(e["line"]) if e["line"].startswith("{") else {}
    if ev.get("event") == "step":
        steps.append((ev["name"], e["t"]))
top = []
in_backup = False
for name, t in steps:
    if name.startswith("pre-upgrade backup"):
        in_backup = True
    elif in_backup and name.startswith(BACKUP):
        continue
    else:
        in_backup = False
    top.append((name, t))
def first(prefix):
    t = next((t for n, t in top if n.startswith(prefix)), None)
    if t is None:
        sys.exit(f"no step event {prefix!r} in {sys.argv[1]}")
    return t
b = first("pre-upgrade backup")
after = next(t for n, t in top if t >= b and not n.startswith("pre-upgrade backup"))
print(f"t_start={start} t_end={end} t_backup={b} t_after={after}")
print(f"t_api={first('replacing agledger-api')} t_worker={first('replacing agledger-worker')} t_check={first('checking the upgraded')}")
phases = [("start, plan", top[0][1] - start)] if top else []
for (n, t), nxt in zip(top, [t for _, t in top[1:]] + [end]):
    phases.append((n.replace("127.0.0.1:5000/agledger/agledger:", ""), nxt - t))
import shlex
print("o_steps=" + shlex.quote(", ".join(f"{n} {d:.2f} s" for n, d in phases)))
PY
) || exit 1
  eval "$steps"
}

# ---------------------------------------------------------------- runs
write_config
# Compile the plugin once (opshost caches the compiled module), so that no
# measured run pays for it; the first run after installing a plugin does.
t0=$(now)
warm=$("$work/bin/opshost" run "$work/bin/upgrade.wasm" --config "$work/config.toml" --policy "$work/policy.toml" --json -- --help \
  | python3 -c "import json, sys; print([json.loads(l) for l in sys.stdin][-1].get('compiled'))")
warm="$warm, $(d "$t0" "$(now)") s"
for hc in $intervals; do
  log "healthcheck interval $hc: vendor flow (docker-compose $(docker-compose version --short))"
  fresh_install 1 "$hc"
  start_prober "vendor-$hc"
  vendor_flow "vendor-$hc"
  stop_prober

  log "healthcheck interval $hc: opshost upgrade"
  fresh_install 1 "$hc"
  : > "$work/audit.ndjson"
  start_prober "opshost-$hc"
  opshost_flow "opshost-$hc"
  stop_prober
  calls=$(python3 -c "
import json, collections
t = collections.defaultdict(float)
for l in open('$work/audit.ndjson'):
    e = json.loads(l)
    if e.get('capability') == 'container' and e.get('verb') in ('recreate', 'stop', 'run', 'pull', 'wait-healthy'):
        t[e['verb'] + ' ' + str(e.get('detail', '')).split('@')[0][:40]] += e.get('duration_us', 0) / 1e6
print('; '.join(f'{k}: {v:.2f} s' for k, v in t.items()))
")
  result "opshost-$hc" whole="$(d "$t_start" "$t_end")" backup="$(d "$t_backup" "$t_after")" after="$(d "$t_after" "$t_end")" \
    phases="$o_steps" calls="$calls" probe="$(summary "opshost-$hc" "$t_start" "$t_end" "$t_start")"

  log "healthcheck interval $hc: opshost upgrade, agledger-worker scaled to 2"
  fresh_install 2 "$hc"
  start_prober "scaled-$hc"
  opshost_flow "scaled-$hc"
  stop_prober
  images=$(docker ps --filter "label=com.docker.compose.project=$project" --filter label=com.docker.compose.service=agledger-worker \
    --format '{{.Image}}' | sed 's/@sha256:\(.\{12\}\).*/@sha256:\1…/' | sort | uniq -c | xargs)
  result "scaled-$hc" whole="$(d "$t_start" "$t_end")" backup="$(d "$t_backup" "$t_after")" after="$(d "$t_after" "$t_end")" \
    phases="$o_steps" workers_after="$(service_ids agledger-worker | wc -l)" images_after="$images" \
    probe="$(summary "scaled-$hc" "$t_start" "$t_end" "$t_start")" \
    probe_replace="$(summary "scaled-$hc" "$t_worker" "$t_check" "$t_start")"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$work" $intervals > "$root/target/bench-upgrade.json" <<'PY'
import json, sys
work, intervals = sys.argv[1], sys.argv[2:]
out = {hc: {f: json.load(open(f"{work}/{f}-{hc}.result.json")) for f in ("vendor", "opshost", "scaled")} for hc in intervals}
json.dump(out, sys.stdout, indent=1)
PY

# ---------------------------------------------------------------- report
report=$(python3 - "$root/target/bench-upgrade.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
def win(t):
    if not t["windows"]:
        return "0 (no failed sample)"
    a, b = t["longest_window"]
    tail = "" if t["longest_recovered"] else ", not recovered"
    return f'{t["longest_s"]:.2f} s (at {a:.2f}-{b:.2f} s{tail})'
def total(t):
    return f'{t["unreachable_s"]:.2f} s ({t["windows"]} window(s), {t["failed"]}/{t["samples"]} samples failed)'
def ratio(a, b):
    return f"{a / b:.2f}x" if b else ("1.00x" if a == b else "n/a (vendor 0)")
def none_answering(t):
    return f'{t["failed"]} of {t["samples"]} samples with no worker answering' + (f', longest {win(t)}' if t["failed"] else "")
for hc, r in data.items():
    v, o, s = r["vendor"], r["opshost"], r["scaled"]
    vt, ot = v["probe"]["targets"], o["probe"]["targets"]
    print(f"**Docker healthcheck interval {hc}**" + (" (the stand-in's)" if hc == "1s" else " (as in the issue's real run)"))
    print()
    print("| | vendor flow (docker-compose 1.29) | opshost | opshost/vendor |")
    print("|---|---|---|---|")
    for what, key in [("API", "api"), ("worker", "worker")]:
        print(f"| {what} `/health` unreachable, longest window | {win(vt[key])} | {win(ot[key])} | {ratio(ot[key]['longest_s'], vt[key]['longest_s'])} |")
        print(f"| {what} `/health` unreachable, total | {total(vt[key])} | {total(ot[key])} | {ratio(ot[key]['unreachable_s'], vt[key]['unreachable_s'])} |")
    print(f"| whole run | {v['whole']:.1f} s | {o['whole']:.1f} s | {o['whole'] / v['whole']:.2f}x |")
    print(f"| pre-upgrade backup | {v['backup']:.1f} s | {o['backup']:.1f} s | {o['backup'] / v['backup']:.2f}x |")
    print(f"| run after the backup | {v['after']:.1f} s | {o['after']:.1f} s | {o['after'] / v['after']:.2f}x |")
    print(f"| agledger-worker x2, samples with no worker container answering (whole run / while the workers are replaced) | | {s['probe']['services']['agledger-worker']['failed']}/{s['probe']['services']['agledger-worker']['samples']} / {s['probe_replace']['services']['agledger-worker']['failed']}/{s['probe_replace']['services']['agledger-worker']['samples']} (run {s['whole']:.1f} s, after the backup {s['after']:.1f} s) | |")
    print()
    a, va = ot["api"], vt["api"]
    ok = a["unreachable_s"] <= va["unreachable_s"] and a["longest_s"] <= va["longest_s"]
    print(f"- API unreachable no longer than the vendor's: " + ("met" if ok else "**not met**")
          + f": {a['longest_s']:.2f} s longest / {a['unreachable_s']:.2f} s total vs the vendor's {va['longest_s']:.2f} s / {va['unreachable_s']:.2f} s (the issue's real run: 0.4 s).")
    q = v["whole"] / 4
    print(f"- Run after the backup at most a quarter of the vendor's run: " + ("met" if o["after"] <= q else "**not met**")
          + f": {o['after']:.1f} s vs {q:.1f} s (a quarter of {v['whole']:.1f} s; {o['after'] / v['whole']:.2f}x). Against the issue's 42 s (quarter 10.5 s): "
          + ("met" if o["after"] <= 10.5 else "not met") + ".")
    w, wr = s["probe"]["services"]["agledger-worker"], s["probe_replace"]["services"]["agledger-worker"]
    print(f"- A service of 2 containers always has one answering (agledger-worker x2, each container probed on its own address): "
          + ("met" if w["failed"] == 0 else "**not met**") + f": {none_answering(w)} over the whole upgrade; {none_answering(wr)} while its containers were replaced;"
          + f" {s['workers_after']} worker containers afterwards ({s['images_after']}).")
    print()
for hc, r in data.items():
    v, o, s = r["vendor"], r["opshost"], r["scaled"]
    print(f"Steps at {hc}: vendor: backup {v['backup']:.2f} s, {v['phases']}. opshost: {o['phases']} (container calls: {o['calls']}). opshost, workers x2: {s['phases']}.")
    print()
PY
)
report="$report
$(nproc) cores, $(date -u +%Y-%m-%d), docker $(docker version --format '{{.Server.Version}}'), docker-compose $(docker-compose version --short), load average $load_before before, $load_after after; each run from a fresh 1.3.2 seeded with 50 mandates x 20 vault entries; probes every 50 ms (1 s timeout, own thread each), so windows are +-50 ms, in seconds from the run's start. Build: $build. The vendor flow has no \`cosign verify\` (no cosign here); opshost verifies keyless signatures in its pull. Compiling upgrade.wasm before the runs (not measured; a first run after installing the plugin pays it once): $warm."
echo "$report" | tee "$root/target/bench-upgrade.md"
