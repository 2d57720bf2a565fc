# syntax=docker/dockerfile:1
# Synapse with synapse-http-antispam, the overlay image its README documents, for compose (c).
# The module is the one already in use with Draupnir or Meowlnir; glia needs no change to it.
ARG SYNAPSE_IMAGE=ghcr.io/element-hq/synapse:v1.163.2
FROM ${SYNAPSE_IMAGE}
# 0.5.1: the version glia's end-to-end tests run against a real Synapse.
RUN pip install --no-cache-dir synapse-http-antispam==0.5.1
