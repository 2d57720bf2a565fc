# syntax=docker/dockerfile:1
# Synapse's image with glia embedded in its process (docs/embedded.md): the glia_embedded
# wheel, built here with maturin in the release profile, and the bridge whose Python pieces it
# shares, installed beside the image's Synapse. Built from the repository root:
#   docker build -f deploy/docker/synapse-embedded.Dockerfile -t synapse-glia-embedded .
# Everything else is Synapse's image unchanged. Mount glia's config (e.g. at
# /data/glia.yaml) and name it in homeserver.yaml:
#   modules:
#     - module: glia_embedded.GliaEmbedded
#       config: {config_file: /data/glia.yaml}
ARG RUST_IMAGE=docker.io/library/rust:1.89-slim-bookworm
ARG SYNAPSE_IMAGE=ghcr.io/element-hq/synapse:v1.163.2

FROM ${RUST_IMAGE} AS wheel
# Python only to run maturin (from PyPI); versions come with the pinned base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/maturin \
    && /opt/maturin/bin/pip install --no-cache-dir maturin==1.16.0
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions the tests ran with.
RUN /opt/maturin/bin/maturin build --release --locked -m embed/Cargo.toml --out /wheels

FROM ${SYNAPSE_IMAGE}
COPY deploy/synapse-bridge/pyproject.toml deploy/synapse-bridge/README.md /tmp/glia-synapse/
COPY deploy/synapse-bridge/glia_synapse /tmp/glia-synapse/glia_synapse
COPY --from=wheel /wheels /tmp/wheels
# Neither package has dependencies to fetch: both install beside the image's Synapse (glia_embedded
# needs only prometheus-client besides the bridge, which Synapse requires too).
RUN pip install --no-cache-dir --no-deps /tmp/glia-synapse /tmp/wheels/glia_embedded-*.whl \
    && rm -rf /tmp/glia-synapse /tmp/wheels
