#!/usr/bin/env bash
# Builds the host (release) and every plugin (wasm32-wasip2, release) into
# the one target directory. Plugins land in target/wasm32-wasip2/release/.
set -euo pipefail
cd "$(dirname "$0")/.."

# The wasm target may be missing on a fresh machine; the shared toolchain
# script installs it (rustup first, then the archive kept beside it).
if ! rustc --print sysroot >/dev/null 2>&1 || [ ! -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2" ]; then
  ../shared/toolchain/ensure-wasm-target
fi

# Every workspace member under plugins/ except the SDK is a plugin.
plugins=$(cargo metadata --no-deps --format-version 1 \
  | python3 -c 'import json,sys; print(" ".join("-p "+p["name"] for p in json.load(sys.stdin)["packages"] if "/plugins/" in p["manifest_path"] and p["name"]!="opshost-sdk"))')
cargo build --release -p opshost
# shellcheck disable=SC2086
cargo build --release --target wasm32-wasip2 $plugins
