#!/usr/bin/env bash
# Benchmark (not a test): throughput of the redaction engine
# (plugins/sdk/src/redact) inside the sandbox beside the same engine
# compiled natively, in one run, on ~100 MB of generated AGLedger logs
# (tests/bench/redact-gen.py: 10 files of 10 MB, ~1% of lines with a
# secret). Both sides run plugins/testing/redact-bench's src/bench.rs: the
# rules built once, then per round one bundle's two passes over every file
# (learn, then redact), each timed inside the process (so the wasm figure
# excludes instantiation and reading the files into the guest). Best and
# median of BENCH_ROUNDS rounds (default 5) per side.
#   wasm         : the plugin as tests/build-plugins.sh builds it
#   wasm+simd128 : the same plugin built with RUSTFLAGS=-Ctarget-feature=+simd128
#                  for the wasm target only (into target/bench-simd, so the
#                  normal build is untouched); BENCH_SIMD=0 skips it
# Prints a markdown table (also target/bench-redact.md; the raw figures as
# JSON lines in target/bench-redact.json). Needs the release host binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
work=/tmp/opshost-bench-redact
rounds=${BENCH_ROUNDS:-5}
lock=/tmp/opshost-build2.lock

[ -x target/release/opshost ] || { echo "missing target/release/opshost: run tests/build-plugins.sh" >&2; exit 1; }
echo "building the plugin and the native side ..." >&2
flock -o "$lock" cargo build --release --target wasm32-wasip2 -p redact-bench --lib >&2
flock -o "$lock" cargo build --release -p redact-bench --bin redact-bench-native >&2
plugins=("wasm:$root/target/wasm32-wasip2/release/redact_bench.wasm")
if [ "${BENCH_SIMD:-1}" != 0 ]; then
  RUSTFLAGS="-Ctarget-feature=+simd128" CARGO_TARGET_DIR="$root/target/bench-simd" \
    flock -o "$lock" cargo build --release --target wasm32-wasip2 -p redact-bench --lib >&2
  plugins+=("wasm+simd128:$root/target/bench-simd/wasm32-wasip2/release/redact_bench.wasm")
fi

if [ ! -f "$work/logs/agledger-09.log" ]; then
  echo "generating ~100 MB of logs in $work/logs ..." >&2
  rm -rf "$work/logs"
  python3 tests/bench/redact-gen.py "$work/logs" 10 10
fi
cat > "$work/config.toml" <<TOML
[dir.logs]
path = "$work/logs"
[audit]
path = "$work/audit.ndjson"
TOML
cat > "$work/policy.toml" <<'TOML'
[[plugin]]
vendor = "opshost-testing"
name = "redact-bench"
allow = ["fs=logs:ro"]
TOML

results=$work/results.json
: > "$results"
echo "native ..." >&2
target/release/redact-bench-native "$work/logs" "$rounds" >> "$results"
for p in "${plugins[@]}"; do
  side=${p%%:*} wasm=${p#*:}
  echo "$side ..." >&2
  target/release/opshost run "$wasm" --config "$work/config.toml" --policy "$work/policy.toml" \
    --json --timeout 30m --memory-mib 2048 -- "$rounds" > "$work/out.ndjson" \
    || { tail -5 "$work/out.ndjson" >&2; exit 1; }
  python3 - "$work/out.ndjson" "$side" >> "$results" <<'PY'
import json, sys
side = sys.argv[2]
for line in open(sys.argv[1]):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    def find(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "data":
                    d = json.loads(v) if isinstance(v, str) else v
                    if isinstance(d, dict) and "redact_best_mbs" in d:
                        return d
                r = find(v)
                if r: return r
        elif isinstance(o, list):
            for v in o:
                r = find(v)
                if r: return r
    d = find(ev)
    if d:
        d["side"] = side
        print(json.dumps(d))
        break
else:
    sys.exit("no figures in the plugin's output: " + open(sys.argv[1]).read()[-2000:])
PY
done
cp "$results" target/bench-redact.json
python3 - "$results" <<'PY' | tee target/bench-redact.md
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
native = rows[0]
print(f"Redaction of {native['mb']:.0f} MB in {native['files']} files, {native['rounds']} rounds, {native['redactions']} redactions per round (MB = 10^6 bytes)\n")
print("| side | rules built | learn MB/s best (median) | redact MB/s best (median) | both passes MB/s best (median) | redact vs native, best (median) | both passes vs native, best (median) |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    rb = r["redact_best_mbs"] / native["redact_best_mbs"]
    rm = r["redact_median_mbs"] / native["redact_median_mbs"]
    tb = r["total_best_mbs"] / native["total_best_mbs"]
    tm = r["total_median_mbs"] / native["total_median_mbs"]
    print(f"| {r['side']} | {r['rules_ms']:.0f} ms | {r['learn_best_mbs']:.0f} ({r['learn_median_mbs']:.0f}) | "
          f"{r['redact_best_mbs']:.0f} ({r['redact_median_mbs']:.0f}) | {r['total_best_mbs']:.0f} ({r['total_median_mbs']:.0f}) | "
          f"{rb:.2f} ({rm:.2f}) | {tb:.2f} ({tm:.2f}) |")
PY
