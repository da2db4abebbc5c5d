#!/usr/bin/env bash
# Remove an AGLedger stand-in project brought up by up.sh.
#
#   tests/standin/down.sh INSTALL_DIR --project NAME [--purge]
#
# Removes every container, volume and network of the compose project NAME:
# `docker-compose down -v`, then anything still labelled
# com.docker.compose.project=NAME (containers recreated through the Docker
# API, one-off `run` containers). --purge also deletes INSTALL_DIR.
set -euo pipefail

usage() { sed -n '2,10p' "$0"; exit 2; }
log() { echo "==> $*"; }

[[ $# -ge 1 && "$1" != -* ]] || usage
install_dir="$1"; shift
project="" purge=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --project) project="${2:?}"; shift ;;
    --purge) purge=1 ;;
    -h|--help) usage ;;
    *) echo "down.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$project" ]] || { echo "down.sh: --project NAME is required" >&2; exit 2; }

compose="$install_dir/compose"
if [[ -f "$compose/docker-compose.yml" ]]; then
  files=(-f docker-compose.yml)
  # The postgres overlay when the project has (or had) a bundled database,
  # whatever COMPOSE_FILE in .env says now.
  if [[ -f "$compose/docker-compose.postgres.yml" ]] && {
       [[ -n "$(docker ps -aq --filter "label=com.docker.compose.project=$project" \
                  --filter label=com.docker.compose.service=postgres)" ]] \
       || docker volume inspect "${project}_pgdata" >/dev/null 2>&1; }; then
    files+=(-f docker-compose.postgres.yml)
  fi
  [[ -f "$compose/docker-compose.prod.yml" ]] && files+=(-f docker-compose.prod.yml)
  (cd "$compose" && docker-compose -p "$project" "${files[@]}" down -v --remove-orphans --timeout 5) || true
fi

label="com.docker.compose.project=$project"
mapfile -t leftovers < <(docker ps -aq --filter "label=$label")
if [[ ${#leftovers[@]} -gt 0 ]]; then
  docker rm -f -v "${leftovers[@]}" >/dev/null
  log "removed ${#leftovers[@]} leftover container(s)"
fi
mapfile -t volumes < <(docker volume ls -q --filter "label=$label")
[[ ${#volumes[@]} -gt 0 ]] && docker volume rm -f "${volumes[@]}" >/dev/null && log "removed volume(s) ${volumes[*]}"
mapfile -t networks < <(docker network ls -q --filter "label=$label")
[[ ${#networks[@]} -gt 0 ]] && docker network rm "${networks[@]}" >/dev/null && log "removed network(s)"

if [[ $purge -eq 1 ]]; then
  rm -rf "$install_dir"
  log "removed $install_dir"
fi
log "down: project $project"
