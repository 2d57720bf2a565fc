#!/usr/bin/env bash
# Builds the glia image with podman from local parts only, for a machine that can reach no
# container registry: a Debian base made by debootstrap, and the glia binary built here (in
# place of the Dockerfile's `build` stage), then runs it and checks /health, the user and the
# health check. Not part of tests/run-all (debootstrap alone takes minutes); run it as root:
#   cargo build --release -p glia-runtime --bin glia
#   deploy/docker/build-local.sh [path/to/glia] [workdir]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
binary="$(realpath "${1:-$root/target/release/glia}")"
work="${2:-$(mktemp -d)}"
for tool in podman buildah debootstrap curl; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing: apt-get install podman buildah debootstrap curl" >&2; exit 1; }
done
[ -x "$binary" ] || { echo "error: no glia binary at $binary; build it first" >&2; exit 1; }

echo "== base image: Debian bookworm by debootstrap"
if [ ! -f "$work/rootfs.tar" ]; then
    debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian
    tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
fi
podman import "$work/rootfs.tar" localhost/glia-base:bookworm

echo "== the binary, as an image the Dockerfile's GLIA_BUILD can name"
ctr="$(buildah from scratch)"
buildah copy "$ctr" "$binary" /usr/local/bin/glia
buildah commit --rm "$ctr" localhost/glia-binary:local

echo "== the image, from deploy/docker/glia.Dockerfile"
podman build --format docker -f "$root/deploy/docker/glia.Dockerfile" \
    --build-arg BASE_IMAGE=localhost/glia-base:bookworm \
    --build-arg GLIA_BUILD=localhost/glia-binary:local \
    -t localhost/glia:local "$root"

echo "== the image's settings"
podman image inspect --format 'user {{.Config.User}}; cmd {{.Config.Entrypoint}} {{.Config.Cmd}}; health check {{.Config.Healthcheck.Test}}' localhost/glia:local
[ "$(podman image inspect --format '{{.Config.User}}' localhost/glia:local)" = "991:991" ] \
    || { echo "error: the image does not run as 991:991" >&2; exit 1; }

echo "== run it"
name="glia-local-$$"
if podman run -d --name "$name" --health-interval=disable -p 127.0.0.1::8787 localhost/glia:local; then
    trap 'podman rm -f "$name" >/dev/null' EXIT
    port="$(podman port "$name" 8787 | head -1 | sed 's/.*://')"
    for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/health" && break; sleep 0.2; done
    echo
    podman healthcheck run "$name" && echo "health check: healthy"
else
    # Some sandboxes refuse the container runtime (runc cannot set rlimits there). Run the
    # image's own files instead: its root file system, its command, as its user, without the
    # container's isolation; then its health check command, the same way.
    podman rm -f "$name" >/dev/null 2>&1 || true
    echo "podman run failed; running the image's file system with chroot instead"
    ctr="$(podman create localhost/glia:local)"
    mkdir -p "$work/image"
    podman export "$ctr" | tar -C "$work/image" -xf -
    podman rm "$ctr" >/dev/null
    chroot --userspec=991:991 "$work/image" /usr/local/bin/glia serve --config /etc/glia/glia.yaml \
        --listen 127.0.0.1:8787 > "$work/glia.log" 2>&1 &
    pid=$!
    trap 'kill "$pid" 2>/dev/null' EXIT
    for _ in $(seq 50); do curl -fsS http://127.0.0.1:8787/health && break; sleep 0.2; done
    echo
    chroot --userspec=991:991 "$work/image" sh -c "curl -fSs http://localhost:8787/health || exit 1" >/dev/null
    echo "health check command: healthy"
fi
echo "glia image built and ran: localhost/glia:local"
