#!/usr/bin/env bash
# What the demo, the tests and CI need on this machine, installed or checked
# once here (tests/demo.sh, tests/run.sh and .ci/run all call it first):
#   - Debian packages: the registry for real pulls, the PostgreSQL 15 server
#     and client tools, docker-compose for the stand-in, openssl for the test
#     CA, python3 for the scripts, iproute2 to find the Docker bridge for the
#     external-mode stand-in, tar to read archives like an operator, curl
#     (the registry's health check), xz-utils (the toolchain archives),
#     pgbouncer (a real connection pooler for the doctor's tests), a C
#     compiler and libclang for the host's pg_query dependency (it compiles
#     libpg_query and runs bindgen at build time);
#   - a reachable Docker Engine (checked, not started);
#   - the Rust targets wasm32-wasip2 (plugins) and x86_64-unknown-linux-musl
#     (the stand-in's static binary).
# Safe to run again and again; prints nothing when everything is there.
# As root it installs what is missing (apt-get update only then); as another
# user it prints the command to run and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

# ------------------------------------------------------------ Debian packages
need=()
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
command -v ip >/dev/null || need+=(iproute2)
command -v tar >/dev/null || need+=(tar)
command -v xz >/dev/null || need+=(xz-utils)
command -v curl >/dev/null || need+=(curl)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v pgbouncer >/dev/null || need+=(pgbouncer)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
[ -x /usr/lib/postgresql/15/bin/pg_dump ] || need+=(postgresql-client-15)
command -v cc >/dev/null || need+=(gcc libc6-dev)
compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || need+=(libclang-dev)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    {
      echo "setup: missing Debian packages: ${need[*]}"
      echo "  install them as root, then run this again:"
      echo "  apt-get update && apt-get install -y --no-install-recommends ${need[*]}"
    } >&2
    exit 1
  fi
  command -v apt-get >/dev/null || die "missing ${need[*]}, and there is no apt-get to install them (this expects Debian 12)"
  # Debian's postgresql-15 creates and starts a default cluster (15/main on
  # 5432). Nothing here uses it (tests/pg.sh runs its own cluster on 54329
  # with its own socket directory), so when this installs PostgreSQL it asks
  # for no default cluster rather than leave an idle server running.
  if [[ " ${need[*]} " == *" postgresql-15 "* && ! -e /etc/postgresql/15/main ]]; then
    mkdir -p /etc/postgresql-common/createcluster.d
    printf '%s\n' "# Written by opshost's tests/setup.sh: no default cluster; tests/pg.sh runs its own." \
      "create_main_cluster = off" > /etc/postgresql-common/createcluster.d/opshost-no-main-cluster.conf
  fi
  say "installing ${need[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ------------------------------------------------------------ Docker Engine
# Started before any of this runs (it is not ours to start); without it the
# stand-in and the container tests cannot run, and that must fail loudly
# rather than skip.
command -v docker >/dev/null || die "the docker command is not installed: a running Docker Engine is required"
docker info >/dev/null 2>&1 || die "the Docker Engine is not reachable ('docker info' fails): start it (and, if not root, make sure you may use /var/run/docker.sock)"

# ------------------------------------------------------------ Rust targets
# Plugins are built for wasm32-wasip2, the stand-in for musl. An installed
# target is left alone; otherwise the shared toolchain scripts install it
# (rustup first, then the archive kept beside them).
command -v rustc >/dev/null || die "rustc is not on the PATH: Rust 1.95 is required"
sysroot=$(rustc --print sysroot)
usable() { compgen -G "$sysroot/lib/rustlib/$1/lib/libstd-*.rlib" >/dev/null; }
toolchain=../shared/toolchain
[ -x "$toolchain/ensure-target" ] || toolchain=""
ensure() {  # TARGET SCRIPT [ARGS...]: SCRIPT (in ../shared/toolchain) installs TARGET
  local target=$1 script=$2; shift 2
  usable "$target" && return 0
  if [ -n "$toolchain" ]; then
    "$toolchain/$script" "$@" >&2
  else
    say "installing the Rust target $target (rustup; ../shared/toolchain is not there)"
    command -v rustup >/dev/null || die "cannot install the Rust target $target: no rustup and no ../shared/toolchain"
    rustup target add "$target" >&2
  fi
  usable "$target" || die "the Rust target $target is still not usable"
}
ensure wasm32-wasip2 ensure-wasm-target
ensure x86_64-unknown-linux-musl ensure-target x86_64-unknown-linux-musl
