#!/usr/bin/env bash
# CI: a Docker engine and the test image for the docker-marked tests (issue 4 §5).
#
# Idempotent and bounded: installs Debian's docker.io and mmdebstrap when missing, starts
# dockerd (vfs, no iptables, no bridge; unix socket + tcp://127.0.0.1:2375) when `docker info`
# does not answer, then builds the test image when missing. Prints what it did. Fails loudly
# (non-zero) when the engine cannot be brought up: with CI=true the docker tests must run.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[docker-setup] $*"; }
SOCK=/var/run/docker.sock
LOGFILE=${AGENTDATA_DOCKERD_LOG:-/var/log/agentdata-dockerd.log}

engine_up() { timeout 10 docker -H "unix://$SOCK" info >/dev/null 2>&1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else
        log "need root for: $*"; return 1
    fi
}

if ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null || ! command -v docker >/dev/null; then
    log "installing docker.io and mmdebstrap (apt-get)"
    as_root timeout 300 apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq docker.io mmdebstrap >/dev/null
else
    log "docker.io and mmdebstrap already installed"
fi

if engine_up; then
    log "docker engine already answering on $SOCK"
else
    log "starting dockerd (log: $LOGFILE)"
    as_root sh -c "nohup setsid dockerd --storage-driver=vfs --iptables=false --bridge=none \
        -H unix://$SOCK -H tcp://127.0.0.1:2375 >'$LOGFILE' 2>&1 < /dev/null &"
    for _ in $(seq 60); do
        engine_up && break
        sleep 1
    done
    if ! engine_up; then
        log "dockerd did not answer within 60 s; last log lines:"
        tail -n 20 "$LOGFILE" 2>/dev/null || true
        exit 1
    fi
    log "dockerd is up"
fi

if ! timeout 10 docker -H tcp://127.0.0.1:2375 info >/dev/null 2>&1; then
    log "warning: no engine answers on tcp://127.0.0.1:2375 (the docker_remote tests need one:"
    log "         start dockerd with -H tcp://127.0.0.1:2375 as well)"
fi

export DOCKER_HOST="unix://$SOCK"
timeout 1200 bash tests/docker/build_image.sh
log "ready: $(docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}')"
