#!/usr/bin/env bash
# Docker for CI (Debian 12, root, no container registry): make sure the engine and debootstrap are
# installed, that an engine answers (starting dockerd in the background if not), and that the
# offline images exist (`npm run images` keeps present, up-to-date images). Idempotent: a second
# run installs, starts and builds nothing. Run it (`bash .ci/docker.sh`) or source it; either way
# its options and exits stay inside the function's subshell.

cpi_docker_setup() (
  set -euo pipefail
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  export DEBIAN_FRONTEND=noninteractive
  log() { printf 'ci/docker: %s\n' "$*" >&2; }

  # 1. Packages: Debian's docker.io (20.10: engine + a matching client) and debootstrap.
  local missing=()
  { [ -x /usr/bin/docker ] && command -v dockerd >/dev/null; } || missing+=(docker.io)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      log "missing ${missing[*]} and not root: run apt-get install -y ${missing[*]} as root"
      return 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi

  # Prefer Debian's 20.10 client: /usr/local/bin/docker (28.x) lacks buildx and warns on builds.
  local docker=docker
  [ -x /usr/bin/docker ] && docker=/usr/bin/docker

  # 2. Engine: no systemd here, so dockerd runs in the background; wait until it answers.
  if ! "$docker" info >/dev/null 2>&1; then
    if pgrep -x dockerd >/dev/null; then
      log "dockerd is running but not answering yet; waiting"
    else
      log "starting dockerd (log: /tmp/dockerd.log)"
      nohup dockerd >/tmp/dockerd.log 2>&1 &
    fi
    local waited=0
    until "$docker" info >/dev/null 2>&1; do
      if [ "$waited" -ge 60 ]; then
        log "the Docker engine did not answer within 60 s; end of /tmp/dockerd.log:"
        tail -n 20 /tmp/dockerd.log >&2 || true
        return 1
      fi
      sleep 1
      waited=$((waited + 1))
    done
    log "engine answers after ${waited} s"
  fi
  log "engine $("$docker" info --format '{{.ServerVersion}}') answers"

  # 3. Offline images (skips those present and up to date).
  npm run --silent images
)

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  cpi_docker_setup
else
  cpi_docker_setup || return
fi
