#!/usr/bin/env bash
# Build the AGLedger stand-in's container images without pulling anything.
#
#   tests/standin/images/build-images.sh [--force] [--only agledger|postgres] [--binary PATH]
#
#   agledger/agledger:1.3.2, :1.3.3, :1.3.4 (1.3.4 is the "broken" release that
#     never becomes healthy), each also tagged 127.0.0.1:5000/agledger/agledger:<v>
#     for the local registry (registry.sh pushes them). FROM scratch + the
#     static musl binary of the crate agledger-standin.
#   agledger-standin/postgres:15: PostgreSQL 15 assembled from the host's
#     Debian packages (postgresql-15 + postgresql-client-15) and every shared
#     library they need.
#
# Re-runs are fast: an image is rebuilt only when it is missing, when its
# inputs changed (a digest of the sources is kept in an image label), or with
# --force. --binary PATH uses a prebuilt static agledger binary instead of
# running cargo (the image digest label then covers that binary).
# Needs: docker, and for the agledger images cargo/rustc 1.95 with the
# x86_64-unknown-linux-musl target (installed here by ensure-target).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
standin="$(cd "$here/.." && pwd)"
repo="$(cd "$standin/../.." && pwd)"

VERSIONS=(1.3.2 1.3.3 1.3.4 1.3.5)
BROKEN_VERSIONS=(1.3.4)
REGISTRY="${AGLEDGER_STANDIN_REGISTRY:-127.0.0.1:5000}"
PG_MAJOR=15
PG_IMAGE="agledger-standin/postgres:$PG_MAJOR"
TARGET=x86_64-unknown-linux-musl
LABEL=org.opshost.standin.inputs

force=0 only="" binary=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) force=1 ;;
    --only) only="${2:?--only needs agledger or postgres}"; shift ;;
    --binary) binary="${2:?--binary needs a path}"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build-images.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$only" in ""|agledger|postgres) ;; *) echo "build-images.sh: --only agledger|postgres" >&2; exit 2 ;; esac

export DOCKER_BUILDKIT=0   # the engine is 20.10 and there is no buildx: use the classic builder
log() { echo "==> $*"; }
# The classic builder prints a deprecation notice on every build: drop it, keep real errors.
quiet_builder() { grep -v -e 'legacy builder is deprecated' -e 'BuildKit is currently disabled' \
  -e 'environment-variable\.' -e '^[[:space:]]*$' >&2 || true; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# After a rebuild, drop the image the tag used to point at if nothing else uses it.
drop_replaced() { [[ -n "$1" && "$1" != "$(docker image inspect -f '{{.Id}}' "$2" 2>/dev/null)" ]] \
  && docker rmi "$1" >/dev/null 2>&1 || true; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
image_label() { docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }
is_broken() { local v; for v in "${BROKEN_VERSIONS[@]}"; do [[ "$v" == "$1" ]] && return 0; done; return 1; }

# ---------------------------------------------------------------- agledger
source_digest() {
  # Everything that goes into the binary and the image, in a stable order.
  (cd "$standin" && find Cargo.toml src images/agledger.Dockerfile -type f | LC_ALL=C sort | xargs sha256sum) \
    | sha256sum | cut -c1-32
}

build_agledger() {
  local digest want v old missing=()
  if [[ -n "$binary" ]]; then
    [[ -x "$binary" ]] || { echo "build-images.sh: $binary is not an executable" >&2; exit 1; }
    digest="bin-$(sha256sum "$binary" | cut -c1-32)"
  else
    digest="src-$(source_digest)"
  fi
  for v in "${VERSIONS[@]}"; do
    want="$digest"; is_broken "$v" && want="$digest-broken"
    if [[ $force -eq 1 || "$(image_label "agledger/agledger:$v")" != "$want" ]]; then
      missing+=("$v")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "agledger images ${VERSIONS[*]} are up to date"
    return 0
  fi

  if [[ -z "$binary" ]]; then
    log "building the static agledger binary ($TARGET)"
    (cd "$repo" && ../shared/toolchain/ensure-target "$TARGET" \
       && cargo build --release --target "$TARGET" -p agledger-standin)
    binary="${CARGO_TARGET_DIR:-$repo/target}/$TARGET/release/agledger"
  fi

  local ctx="$work/agledger"
  for v in "${missing[@]}"; do
    rm -rf "$ctx"
    mkdir -p "$ctx/etc/agledger"
    cp "$binary" "$ctx/agledger"
    chmod 0755 "$ctx/agledger"
    printf '%s\n' "$v" > "$ctx/etc/agledger/version"
    want="$digest"
    if is_broken "$v"; then
      echo "this image models a release that never becomes healthy" > "$ctx/etc/agledger/broken"
      want="$digest-broken"
    fi
    cp "$here/agledger.Dockerfile" "$ctx/Dockerfile"
    log "building agledger/agledger:$v$(is_broken "$v" && echo ' (broken)')"
    old="$(image_id "agledger/agledger:$v")"
    docker build -q -t "agledger/agledger:$v" -t "$REGISTRY/agledger/agledger:$v" \
      --label "$LABEL=$want" --label "org.opencontainers.image.version=$v" \
      --label "org.opencontainers.image.title=agledger-standin" "$ctx" 2>&1 >/dev/null | quiet_builder
    drop_replaced "$old" "agledger/agledger:$v"
  done
}

# ---------------------------------------------------------------- postgres
pg_digest() {
  { sha256sum "$here/postgres/Dockerfile" "$here/postgres/entrypoint.sh"
    sed -n '/^# ---.* postgres$/,/^# ---.* main$/p' "$0" | sha256sum
    "/usr/lib/postgresql/$PG_MAJOR/bin/postgres" --version
  } | sha256sum | cut -c1-32
}

# Copy a file (following symlinks) to the same path under $root, with the
# directory part resolved so that it lands under /usr (merged /usr layout).
copy_resolved() {
  local src="$1" root="$2" dir
  dir="$(readlink -f "$(dirname "$src")")"
  mkdir -p "$root$dir"
  cp -L --preserve=mode "$src" "$root$dir/$(basename "$src")"
}

build_postgres() {
  local pgbin="/usr/lib/postgresql/$PG_MAJOR/bin" pglib="/usr/lib/postgresql/$PG_MAJOR/lib"
  local pgshare="/usr/share/postgresql/$PG_MAJOR" digest
  [[ -x "$pgbin/postgres" && -x "$pgbin/psql" && -x "$pgbin/pg_isready" ]] || {
    echo "build-images.sh: PostgreSQL $PG_MAJOR is not installed on this host" >&2
    echo "  apt-get install -y postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR" >&2
    exit 1
  }
  digest="$(pg_digest)"
  if [[ $force -eq 0 && "$(image_label "$PG_IMAGE")" == "$digest" ]]; then
    log "$PG_IMAGE is up to date"
    return 0
  fi
  log "assembling the $PG_IMAGE rootfs from the host's PostgreSQL $PG_MAJOR"
  local ctx="$work/postgres" root="$work/postgres/rootfs"
  mkdir -p "$root"/{usr/bin,usr/lib,usr/lib64,usr/local/bin,usr/share,etc,tmp,var/lib/postgresql,var/run,root}
  ln -s usr/bin "$root/bin"; ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
  chmod 1777 "$root/tmp"

  # PostgreSQL itself (no llvmjit: it would pull in all of LLVM; jit is off).
  mkdir -p "$root/usr/lib/postgresql/$PG_MAJOR" "$root/usr/share/postgresql"
  cp -a "$pgbin" "$root/usr/lib/postgresql/$PG_MAJOR/bin"
  mkdir -p "$root$pglib"
  find "$pglib" -maxdepth 1 -type f ! -name 'llvmjit*' -exec cp -a {} "$root$pglib/" \;
  cp -a "$pgshare" "$root/usr/share/postgresql/$PG_MAJOR"
  rm -rf "$root/usr/share/postgresql/$PG_MAJOR/man"
  cp -a /usr/share/zoneinfo "$root/usr/share/zoneinfo"   # built --with-system-tzdata

  # A shell (initdb and pg_ctl use popen/system) and a few tools for the
  # entrypoint and for people who `docker exec` into it.
  local tool
  for tool in /bin/dash /usr/bin/{cat,chmod,env,id,locale,ls,mkdir,rm,sleep}; do
    copy_resolved "$tool" "$root"
  done
  # initdb runs `locale -a` to import collations; give it the C.UTF-8 locale.
  [[ -d /usr/lib/locale/C.utf8 ]] && mkdir -p "$root/usr/lib/locale" \
    && cp -a /usr/lib/locale/C.utf8 "$root/usr/lib/locale/"
  ln -s dash "$root/usr/bin/sh"
  cp "$here/postgres/entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
  chmod 0755 "$root/usr/local/bin/docker-entrypoint.sh"

  # Every shared library any of those executables or modules needs.
  local elf lib
  while read -r lib; do
    copy_resolved "$lib" "$root"
  done < <(
    for elf in "$root"/usr/lib/postgresql/$PG_MAJOR/bin/* "$root$pglib"/*.so "$root"/usr/bin/*; do
      [[ -L "$elf" ]] && continue
      ldd "$elf" 2>/dev/null | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}'
    done | sort -u
  )

  # Users: the server refuses to run as root; initdb needs a name for its uid.
  cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
  cat > "$root/etc/group" <<'GROUP'
root:x:0:
postgres:x:999:
nogroup:x:65534:
GROUP
  echo "passwd: files" > "$root/etc/nsswitch.conf"
  echo "group: files" >> "$root/etc/nsswitch.conf"
  mkdir -p "$ctx/owned/data" "$ctx/owned/run"
  chmod 0700 "$ctx/owned/data"; chmod 2775 "$ctx/owned/run"
  cp "$here/postgres/Dockerfile" "$ctx/Dockerfile"

  log "building $PG_IMAGE ($(du -sh "$root" | cut -f1) rootfs)"
  local old; old="$(image_id "$PG_IMAGE")"
  docker build -q -t "$PG_IMAGE" --label "$LABEL=$digest" \
    --label "org.opencontainers.image.title=agledger-standin-postgres" "$ctx" 2>&1 >/dev/null | quiet_builder
  drop_replaced "$old" "$PG_IMAGE"
}

# ---------------------------------------------------------------- main
if [[ -z "$only" || "$only" == postgres ]]; then build_postgres; fi
if [[ -z "$only" || "$only" == agledger ]]; then build_agledger; fi
log "images:"
docker images --format '  {{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}' \
  | grep -E 'agledger/agledger|agledger-standin/postgres' || true
