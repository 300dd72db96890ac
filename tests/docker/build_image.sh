#!/usr/bin/env bash
# Builds the small image the docker tests run in (idempotent: skips what already exists).
#
#   agentdata-tui-test-base:bookworm  Debian bookworm minbase + git, python3, ca-certificates
#                                     (mmdebstrap + docker import; needs the Debian mirror once)
#   agentdata-tui-test:demo           the base + the bundled demo repos as git repos under /app/<repo>
#                                     (rebuilt when the repos change: their hash is a label)
#
# Usage: bash tests/docker/build_image.sh   (DOCKER_HOST is honoured)
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE=agentdata-tui-test-base:bookworm
IMAGE=agentdata-tui-test:demo
REPOS=agentdata_tui/demo/data/repos

log() { echo "[build_image] $*"; }

# Bump when the base recipe changes (the image carries it as a label).
RECIPE=2
have_recipe=$(docker image inspect -f '{{ index .Config.Labels "agentdata-tui.recipe" }}' "$BASE" 2>/dev/null || true)
if [ "$have_recipe" = "$RECIPE" ]; then
    log "base image $BASE present (recipe $RECIPE)"
else
    command -v mmdebstrap >/dev/null || { log "mmdebstrap is not installed (apt-get install mmdebstrap)"; exit 1; }
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    log "building $BASE with mmdebstrap (about a minute)"
    # No docs, man pages or translations: vfs copies the whole tree for every container.
    timeout 900 mmdebstrap --quiet --variant=minbase --include=git,python3,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        bookworm "$work/rootfs.tar"
    docker import --change 'CMD ["bash"]' --change "LABEL agentdata-tui.recipe=$RECIPE" \
        "$work/rootfs.tar" "$BASE" >/dev/null
    rm -rf "$work"
    trap - EXIT
    log "imported $BASE"
fi

sha=$(cd "$REPOS" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
base_id=$(docker image inspect -f '{{ .Id }}' "$BASE")
sha="$sha-${base_id:7:12}"  # a rebuilt base rebuilds the demo image too
have=$(docker image inspect -f '{{ index .Config.Labels "agentdata-tui.repos-sha" }}' "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$sha" ]; then
    log "image $IMAGE present (repos $sha)"
    exit 0
fi

log "building $IMAGE (repos $sha)"
cid=$(docker create --network none --label agentdata-tui.build=1 "$BASE" sleep 600)
cleanup() { docker rm -f "$cid" >/dev/null 2>&1 || true; }
trap cleanup EXIT
docker start "$cid" >/dev/null
docker exec "$cid" mkdir -p /app
for repo in "$REPOS"/*/; do
    name=$(basename "$repo")
    docker cp "$repo" "$cid:/app/$name"
    docker exec -w "/app/$name" "$cid" sh -c \
        'git init -q && git add -A && git -c user.name=agentdata -c user.email=agentdata@localhost commit -qm base'
    log "  /app/$name"
done
docker stop -t 0 "$cid" >/dev/null
docker commit --change 'CMD ["bash"]' --change "LABEL agentdata-tui.repos-sha=$sha" "$cid" "$IMAGE" >/dev/null
log "committed $IMAGE"
