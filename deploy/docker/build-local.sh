#!/usr/bin/env bash
# Builds the glia image with podman from local parts only, for a machine that can reach no
# container registry: a Debian base made by debootstrap, and a glia binary built here (in place
# of the Dockerfile's `build` stage). Run it as root:
#   cargo build --release -p glia-runtime --bin glia
#   deploy/docker/build-local.sh [path/to/glia] [cache dir]
# The base's tarball is kept in the cache dir (default target/containers), and the imported base
# in podman's storage, so a second build skips debootstrap (about 3 minutes) and reuses the
# layers. Tags localhost/glia:local and localhost/glia:latest (the compose files' `glia:latest`).
# tests/deploy/containers.sh runs what it builds.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
binary="${1:-$root/target/release/glia}"
cache="${2:-$root/target/containers}"
base=localhost/glia-base:bookworm
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/deploy/docker/containers.conf}"
for tool in podman buildah debootstrap; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing: apt-get install podman buildah debootstrap runc" >&2; exit 1; }
done
[ -x "$binary" ] || { echo "error: no glia binary at $binary; build it first" >&2; exit 1; }
binary="$(realpath "$binary")"
mkdir -p "$cache"

echo "== base image: Debian bookworm by debootstrap ($base)"
if ! podman image exists "$base"; then
    if [ ! -f "$cache/bookworm-minbase.tar" ]; then
        rm -rf "$cache/rootfs"
        debootstrap --variant=minbase bookworm "$cache/rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log"
        echo "debootstrap took ${SECONDS}s"
        tar -C "$cache/rootfs" -cf "$cache/bookworm-minbase.tar.part" .
        mv "$cache/bookworm-minbase.tar.part" "$cache/bookworm-minbase.tar"
        rm -rf "$cache/rootfs"
    fi
    podman import --quiet "$cache/bookworm-minbase.tar" "$base"
fi

echo "== the binary, as an image the Dockerfile's GLIA_BUILD can name"
ctr="$(buildah from scratch)"
buildah copy --quiet "$ctr" "$binary" /usr/local/bin/glia
buildah commit --quiet --rm "$ctr" localhost/glia-binary:local

echo "== the image, from deploy/docker/glia.Dockerfile"
podman build --quiet --format docker -f "$root/deploy/docker/glia.Dockerfile" \
    --build-arg BASE_IMAGE="$base" --build-arg GLIA_BUILD=localhost/glia-binary:local \
    -t localhost/glia:local -t localhost/glia:latest "$root"
podman image inspect --format 'user {{.Config.User}}; cmd {{.Config.Entrypoint}} {{.Config.Cmd}}; health check {{.Config.Healthcheck.Test}}' localhost/glia:local
