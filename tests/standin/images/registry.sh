#!/usr/bin/env bash
# A local OCI registry on 127.0.0.1:5000 for the stand-in's images.
#
#   tests/standin/images/registry.sh start [--no-push]   start it (if needed), push the agledger images
#   tests/standin/images/registry.sh push                push agledger/agledger:<v> for every local <v>
#   tests/standin/images/registry.sh stop [--purge]      stop it (--purge also deletes its storage)
#   tests/standin/images/registry.sh status
#
# Installs nothing: it needs the Debian package `docker-registry` (the
# distribution registry 2.8; the package starts no service). CI installs it
# with apt-get. Docker treats registries on 127.0.0.0/8 as insecure (plain
# HTTP) by default, so no daemon configuration is needed.
#
# State lives in $AGLEDGER_STANDIN_REGISTRY_DIR (default
# /tmp/agledger-standin-registry): config.yml, storage/, registry.pid, registry.log.
set -euo pipefail

ADDR="${AGLEDGER_STANDIN_REGISTRY_ADDR:-127.0.0.1:5000}"
DIR="${AGLEDGER_STANDIN_REGISTRY_DIR:-/tmp/agledger-standin-registry}"
PIDFILE="$DIR/registry.pid"
VERSIONS=(1.3.2 1.3.3 1.3.4 1.3.5)

log() { echo "==> $*"; }
die() { echo "registry.sh: $*" >&2; exit 1; }

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
answering() { curl -fsS -o /dev/null --max-time 2 "http://$ADDR/v2/" 2>/dev/null; }

start() {
  command -v docker-registry >/dev/null \
    || die "docker-registry is not installed (apt-get install -y docker-registry)"
  if running && answering; then
    log "registry already running on $ADDR (pid $(cat "$PIDFILE"))"
    return 0
  fi
  answering && die "something else already answers on $ADDR; stop it first"
  mkdir -p "$DIR/storage"
  cat > "$DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/storage
  delete:
    enabled: true
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
EOF
  nohup docker-registry serve "$DIR/config.yml" >>"$DIR/registry.log" 2>&1 </dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 50); do
    answering && { log "registry listening on $ADDR (pid $(cat "$PIDFILE"), storage $DIR/storage)"; return 0; }
    running || break
    sleep 0.1
  done
  tail -n 20 "$DIR/registry.log" >&2 || true
  die "the registry did not start (log: $DIR/registry.log)"
}

push() {
  answering || die "no registry answers on $ADDR: run '$0 start' first"
  local v image pushed=0
  for v in "${VERSIONS[@]}"; do
    image="$ADDR/agledger/agledger:$v"
    if ! docker image inspect "$image" >/dev/null 2>&1; then
      if docker image inspect "agledger/agledger:$v" >/dev/null 2>&1; then
        docker tag "agledger/agledger:$v" "$image"
      else
        echo "registry.sh: agledger/agledger:$v is not built (run build-images.sh); skipped" >&2
        continue
      fi
    fi
    log "pushing $image"
    docker push -q "$image" >/dev/null
    pushed=$((pushed + 1))
  done
  log "$pushed image(s) in the registry: $(curl -fsS "http://$ADDR/v2/agledger/agledger/tags/list" 2>/dev/null || echo '?')"
}

stop() {
  if running; then
    local pid; pid="$(cat "$PIDFILE")"
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    log "registry stopped (pid $pid)"
  else
    log "registry is not running"
  fi
  rm -f "$PIDFILE"
  if [[ "${1:-}" == "--purge" ]]; then
    rm -rf "$DIR"
    log "removed $DIR"
  fi
}

case "${1:-}" in
  start)
    start
    [[ "${2:-}" == "--no-push" ]] || push ;;
  push) push ;;
  stop) stop "${2:-}" ;;
  status)
    if running && answering; then
      echo "running on $ADDR (pid $(cat "$PIDFILE"))"
    else
      echo "not running"; exit 1
    fi ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
