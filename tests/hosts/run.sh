#!/usr/bin/env bash
# The fault matrix: glia's coordinators, a 3-node NATS cluster, workers and a Python host on
# hosts that are network namespaces, under steady load from a "synapse" host, while a worker
# is partitioned from NATS, a coordinator from the synapse host, a link is made slow and lossy,
# and hosts are killed (docs/fault-matrix.md). About a minute and a half.
# Needs root (namespaces, veth links, nftables), `ip` (iproute2), `nft` (nftables) and
# nats-server; the release glia (GLIA_BIN, else $CARGO_TARGET_DIR/release/glia, built when
# missing) and the e2e venv (tests/e2e/setup.sh, run here). Extra arguments go to
# fault_matrix.py (`--keep DIR` keeps the logs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ "$(id -u)" != 0 ]; then
    echo "error: the fault matrix makes network namespaces, veth links and nftables rules, which needs root:" >&2
    echo "       run it as root: sudo $0 (tests/run-all runs it; CI runs as root)" >&2
    exit 1
fi
export PATH="$PATH:/usr/sbin:/sbin"
for tool in ip:iproute2 nft:nftables nats-server:nats-server; do
    if ! command -v "${tool%%:*}" >/dev/null; then
        echo "error: ${tool%%:*} is missing; install it: apt-get install ${tool#*:}" >&2
        exit 1
    fi
done

"$root/tests/e2e/setup.sh"
if [ -z "${GLIA_BIN:-}" ]; then
    GLIA_BIN="${CARGO_TARGET_DIR:-$root/target}/release/glia"
    [ -x "$GLIA_BIN" ] || (cd "$root" && cargo build --release --locked -p glia-runtime --bin glia)
fi
export GLIA_BIN
"$root/tests/e2e/.venv/bin/ruff" check "$here"
"$root/tests/e2e/.venv/bin/ruff" format --check "$here"
export PYTHONPATH="$root/tests/e2e:$here"
exec "$root/tests/e2e/.venv/bin/python" "$here/fault_matrix.py" "$@"
