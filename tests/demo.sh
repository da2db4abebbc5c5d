#!/usr/bin/env bash
# A first taste: build everything, then run the example operation against a
# local HTTP service, show what it wrote and what was audited, and show the
# refusal when a grant is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/build-plugins.sh >/dev/null 2>&1 || tests/build-plugins.sh

demo=$(mktemp -d /tmp/opshost-demo.XXXXXX)
mkdir -p "$demo/work" "$demo/api"
echo '{"status":"ok","version":"demo"}' > "$demo/api/health"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$demo/api" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

cat > "$demo/config.toml" <<TOML
[dir.work]
path = "work"
[http.api]
url = "http://127.0.0.1:$port"
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
