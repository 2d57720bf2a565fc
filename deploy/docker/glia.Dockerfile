# syntax=docker/dockerfile:1
# The glia image: `glia serve` by default, `glia worker` with another command (see the README,
# "Deploying glia"). Built from the repository root:
#   docker build -f deploy/docker/glia.Dockerfile -t glia .
# Like Synapse's image it runs as UID/GID 991 and checks /health; the config lives at
# /etc/glia/glia.yaml, the example config until one is mounted there.

# Where images come from, as arguments so that a build without a registry can give local ones
# (deploy/docker/build-local.sh). GLIA_BUILD names the stage, or an image, holding the binary
# at /usr/local/bin/glia: `build` compiles it here.
ARG RUST_IMAGE=docker.io/library/rust:1.89-slim-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
ARG GLIA_BUILD=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions the tests ran with.
RUN cargo build --release --locked -p glia-runtime --bin glia \
    && install -m 0755 target/release/glia /usr/local/bin/glia

# FROM an argument cannot be named in COPY --from, so the chosen stage gets a name of its own.
# hadolint ignore=DL3006
FROM ${GLIA_BUILD} AS binary

FROM ${BASE_IMAGE}
# curl for the health check, as in Synapse's image; versions come with the pinned base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 991 glia \
    && useradd --system --uid 991 --gid 991 --home-dir /var/lib/glia --create-home glia \
    && mkdir -p /etc/glia
COPY --from=binary /usr/local/bin/glia /usr/local/bin/glia
COPY deploy/glia.example.yaml /etc/glia/glia.yaml

USER 991:991
WORKDIR /var/lib/glia
# 8787: the HTTP API, /health and /metrics of `glia serve`; 9787: `glia worker`'s /health and
# /metrics (workers have no HTTP API), the port the compose and Kubernetes files give
# --metrics-listen.
EXPOSE 8787 9787
# A worker's /health is on its metrics listener (9787): its compose and Kubernetes files check it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s \
    CMD ["sh", "-c", "curl -fSs http://localhost:8787/health || exit 1"]
ENTRYPOINT ["/usr/local/bin/glia"]
# In a container glia must listen beyond loopback: set auth_token_file in the config you mount.
CMD ["serve", "--config", "/etc/glia/glia.yaml", "--listen", "0.0.0.0:8787"]
