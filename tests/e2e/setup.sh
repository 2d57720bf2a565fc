#!/usr/bin/env bash
# Creates (or refreshes) the end-to-end test venv at tests/e2e/.venv: matrix-synapse (with its
# redis extra, and psycopg2-binary for Postgres: the worker deployment's; and its opentracing
# extra, jaeger-client, for test_trace_through.py), pytest,
# nats-py (for the example NATS module and its test), ruff (the Python lint), synapse-http-antispam
# (the module Draupnir and Meowlnir are fed by, pointed at glia in its e2e test), the real modules
# glia's Python host runs in its tests (matrix-synapse-ldap3, shared-secret-authenticator and the
# `ACTING` modules of test_real_modules_acting.py), and the glia bridge (deploy/synapse-bridge) and Python host (deploy/python-host) in editable mode,
# the host with its `tracing` extra (the OpenTelemetry SDK and OTLP exporters, pinned below: the
# host's span in test_trace_through.py).
# Idempotent: when everything is already installed it only checks, in about a second.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
bridge="$root/deploy/synapse-bridge"
host="$root/deploy/python-host"
synapse_version="1.163.2"
ruff_version="0.17.6"
antispam_version="0.5.1"
ldap3_version="0.4.0"
shared_secret_version="2.0.1"
# The real modules of test_real_modules_acting.py, pinned (docs/python-host.md's table names
# these versions). synapse-freeze-room 1.1.0 imports frozendict without declaring it.
acting_modules=(
    "synapse-token-authenticator==0.14.1"
    "synapse-auto-accept-invite==1.2.0"
    "synapse-freeze-room==1.1.0"
    "frozendict==2.4.7"
    "synapse-room-access-rules==1.0.0"
    "synapse-registration-notifier==0.1.2"
    "synapse-stickerpicker==0.1.0"
    # jwcrypto 1.6.2 refuses a padded base64url key, which synapse-token-authenticator 0.14.1
    # makes of a secret whose length is not a multiple of 3 (its constructor fails, natively too).
    "jwcrypto==1.6.1"
)
# Synapse's `postgres` extra builds psycopg2 from source (libpq-dev, a C compiler); the wheel of
# the same code needs neither.
psycopg2_version="2.9.13"
# The host's `tracing` extra, pinned.
otel_version="1.45.2"
otel_packages=(
    "opentelemetry-sdk==$otel_version"
    "opentelemetry-exporter-otlp-proto-grpc==$otel_version"
    "opentelemetry-exporter-otlp-proto-http==$otel_version"
)
python="${PYTHON:-python3}"

installed() {
    [ -x "$venv/bin/python" ] || return 1
    "$venv/bin/python" - "$synapse_version" "$bridge" "$ruff_version" "$antispam_version" "$host" \
        "$ldap3_version" "$shared_secret_version" "$psycopg2_version" "${acting_modules[@]}" "${otel_packages[@]}" <<'PY' 2>/dev/null
import os, sys
from importlib.metadata import version
import nats, pytest, synapse, glia_synapse, glia_python_host, synapse_http_antispam  # noqa: F401
import ldap_auth_provider, shared_secret_authenticator  # noqa: F401
import psycopg2, txredisapi  # noqa: F401  (Postgres and Redis for the worker deployment)
import jaeger_client, opentracing  # noqa: F401  (Synapse's own tracing, test_trace_through.py)
import opentelemetry.sdk.trace  # noqa: F401  (the host's tracing extra)
import opentelemetry.exporter.otlp.proto.grpc.trace_exporter, opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
want_version, bridge, want_ruff = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3]
assert version("synapse-http-antispam") == sys.argv[4], version("synapse-http-antispam")
assert version("matrix-synapse") == want_version, version("matrix-synapse")
assert version("ruff") == want_ruff, version("ruff")
assert version("matrix-synapse-ldap3") == sys.argv[6], version("matrix-synapse-ldap3")
assert version("shared-secret-authenticator") == sys.argv[7], version("shared-secret-authenticator")
assert version("psycopg2-binary") == sys.argv[8], version("psycopg2-binary")
for pin in sys.argv[9:]:
    name, want = pin.split("==")
    assert version(name) == want, (name, version(name))
assert os.path.realpath(glia_synapse.__file__).startswith(bridge + os.sep), glia_synapse.__file__
host = os.path.realpath(sys.argv[5])
assert os.path.realpath(glia_python_host.__file__).startswith(host + os.sep), glia_python_host.__file__
PY
}

if installed; then
    echo "e2e venv ready: $venv (matrix-synapse[redis,opentracing] $synapse_version, psycopg2-binary $psycopg2_version, pytest, nats-py, ruff, synapse-http-antispam $antispam_version, matrix-synapse-ldap3 $ldap3_version, shared-secret-authenticator $shared_secret_version, ${acting_modules[*]}, ${otel_packages[*]}, glia_synapse, glia_python_host[tracing])"
    exit 0
fi

if ! command -v "$python" >/dev/null; then
    echo "error: $python not found; install Python 3.10 or later (or set PYTHON=...)" >&2
    exit 1
fi
echo "creating the e2e venv at $venv (matrix-synapse $synapse_version; needs PyPI access, ~30 s)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "matrix-synapse[redis,opentracing]==$synapse_version" "psycopg2-binary==$psycopg2_version" "pytest>=7" "nats-py>=2.6" "ruff==$ruff_version" \
    "synapse-http-antispam==$antispam_version" "matrix-synapse-ldap3==$ldap3_version" \
    "shared-secret-authenticator==$shared_secret_version" "${acting_modules[@]}" "${otel_packages[@]}" \
    -e "$bridge" -e "$host[tracing]"
installed || { echo "error: the e2e venv at $venv is still incomplete after pip install" >&2; exit 1; }
echo "e2e venv ready: $venv"
