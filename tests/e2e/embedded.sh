#!/usr/bin/env bash
# Builds the embedded placement's wheel (embed/: the glia_embedded package and its Rust
# extension) with maturin from PyPI, in the dev profile (a release build of the runtime as a
# cdylib costs minutes on a small machine; bench_unsigned.py says how to build one), and
# installs it into the e2e venv. Needs tests/e2e/setup.sh's venv. Cargo's own build cache makes
# a rebuild with nothing changed a few seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
maturin_version="1.16.0"
profile="${GLIA_EMBEDDED_PROFILE:-dev}"
target="${CARGO_TARGET_DIR:-$root/target}"
if ! "$venv/bin/maturin" --version 2>/dev/null | grep -qx "maturin $maturin_version"; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "maturin==$maturin_version"
fi
out="$target/wheels/$profile"
rm -rf "$out"
"$venv/bin/maturin" build --quiet --locked --profile "$profile" -m "$root/embed/Cargo.toml" --out "$out" \
    --interpreter "$venv/bin/python"
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$out"/glia_embedded-*.whl
echo "glia_embedded ($profile) installed into $venv"
