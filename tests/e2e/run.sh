#!/usr/bin/env bash
# The end-to-end tests: a real Synapse with the glia bridge, glia with the seed modules, the
# example Python module served over NATS (needs nats-server: `apt-get install nats-server`), and
# a Synapse with synapse-http-antispam pointed at glia, which asks fakes of Draupnir and Meowlnir.
# Needs a built glia (`cargo build -p glia-runtime --bin glia`; or GLIA_BIN=/path/to/glia) and
# the fakes (`cargo build -p glia-tests --bin glia-antispam-fake`; tests/run-all builds both),
# Python 3.10+ and PyPI access the first time (setup.sh creates tests/e2e/.venv).
# Extra arguments go to pytest (e.g. `-k web_resources`, `-x`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

"$here/setup.sh"
export GLIA_BIN="${GLIA_BIN:-$root/target/debug/glia}"
if [ ! -x "$GLIA_BIN" ]; then
    echo "error: no glia binary at $GLIA_BIN; run \`cargo build -p glia-runtime --bin glia\` first" >&2
    exit 1
fi
# The Python code is linted as the Rust is: the bridge, the example module, these tests.
"$here/.venv/bin/ruff" check "$root/deploy/synapse-bridge" "$root/deploy/examples" "$here"
"$here/.venv/bin/ruff" format --check "$root/deploy/synapse-bridge" "$root/deploy/examples" "$here"
cd "$here"
exec "$here/.venv/bin/python" -m pytest "$@"
