# NATS for the compose test (tests/deploy/containers.sh): no registry is reachable there, so
# compose (b)'s nats image is stood in for by Debian's nats-server on the debootstrap base,
# with wget for the compose file's health check and the same entrypoint as the official image.
ARG BASE_IMAGE=localhost/glia-base:bookworm
# hadolint ignore=DL3006
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nats-server wget \
    && rm -rf /var/lib/apt/lists/*
USER 65534:65534
EXPOSE 4222 8222
ENTRYPOINT ["nats-server"]
