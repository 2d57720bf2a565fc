#!/usr/bin/env bash
# The end-to-end tests: a real Synapse with the glia bridge, glia with the seed modules, the
# example Python module served over NATS (needs nats-server: `apt-get install nats-server`),
# a Synapse with synapse-http-antispam pointed at glia, which asks fakes of Draupnir and Meowlnir,
# and real Synapse modules run natively and in glia's Python host (needs slapd and ldap-utils:
# `apt-get install slapd ldap-utils`), and Synapse as a main process and two workers on Postgres
# and Redis (needs `apt-get install postgresql redis-server`).
# Needs a built glia (`cargo build -p glia-runtime --bin glia`; or GLIA_BIN=/path/to/glia) and
# the test binaries beside it (`cargo build -p glia-tests --bins`: glia-antispam-fake, and
# glia-otlp-receiver for test_trace_through.py and test_embedded_trace.py; tests/run-all builds them all),
# Python 3.10+ and PyPI access the first time (setup.sh creates tests/e2e/.venv).
# Extra arguments go to pytest (e.g. `-k web_resources`, `-x`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

"$here/setup.sh"
# The embedded placement's wheel (maturin, dev profile), for test_embedded*.py.
"$here/embedded.sh"
export GLIA_BIN="${GLIA_BIN:-$root/target/debug/glia}"
if [ ! -x "$GLIA_BIN" ]; then
    echo "error: no glia binary at $GLIA_BIN; run \`cargo build -p glia-runtime --bin glia\` first" >&2
    exit 1
fi
# The OTLP receiver the trace tests run (tests/src/bin/glia-otlp-receiver.rs).
receiver="${GLIA_OTLP_RECEIVER_BIN:-$(dirname "$GLIA_BIN")/glia-otlp-receiver}"
if [ ! -x "$receiver" ]; then
    echo "error: no glia-otlp-receiver at $receiver; run \`cargo build -p glia-tests --bin glia-otlp-receiver\` first" >&2
    exit 1
fi
# The Python code is linted as the Rust is: the bridge, the Python host, the example module, the
# embedded placement's package, these tests, the docs' link checker.
python_code=("$root/deploy/synapse-bridge" "$root/deploy/python-host" "$root/deploy/examples" "$root/embed/python" "$here"
    "$root/tests/docs")
"$here/.venv/bin/ruff" check "${python_code[@]}"
"$here/.venv/bin/ruff" format --check "${python_code[@]}"
# The Python host's own unit tests (no homeserver), then the end-to-end tests.
"$here/.venv/bin/python" -m pytest -q -p no:cacheprovider "$root/deploy/python-host/tests"
cd "$here"
exec "$here/.venv/bin/python" -m pytest "$@"
