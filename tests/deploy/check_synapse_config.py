"""Loads Synapse config fragments (the `modules:` that load the glia bridge or synapse-http-antispam)
with Synapse's own config loader, after a homeserver.yaml that Synapse generates, as Synapse
does at start-up: each module is imported and its `parse_config` run, so a wrong key, a module
name that does not import or a bad value fails here. Runs in the end-to-end venv (matrix-synapse,
the bridge, synapse-http-antispam). A fragment may be a file, or FILE:KEY|KEY|... naming a YAML
string inside a values file, its keys separated by `|` (the ESS fragment's `synapse.additional.<name>.config`).

    python check_synapse_config.py WORKDIR FRAGMENT...
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from synapse.config.homeserver import HomeServerConfig


def fragment_file(spec: str, workdir: Path, index: int) -> Path:
    """The fragment as a file: `spec` itself, or the string at its keys inside it."""
    path, _, keys = spec.partition(":")
    if not keys:
        return Path(path)
    value = yaml.safe_load(Path(path).read_text())
    for key in keys.split("|"):
        value = value[key]
    out = workdir / f"fragment-{index}.yaml"
    out.write_text(value)
    return out


def main(workdir: Path, specs: list[str]) -> int:
    base = workdir / "homeserver.yaml"
    if not base.exists():
        subprocess.run(
            [
                *(sys.executable, "-m", "synapse.app.homeserver", "--generate-config", "--server-name", "example.com"),
                *("--report-stats", "no", "--config-path", str(base), "--data-directory", str(workdir)),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # The generated config names matrix.org as key server, and Synapse warns on every load.
        with base.open("a") as f:
            f.write("\nsuppress_key_server_warning: true\n")  # the file may not end in a newline
    failed = 0
    for index, spec in enumerate(specs):
        fragment = fragment_file(spec, workdir, index)
        try:
            paths = ["--config-path", str(base), "--config-path", str(fragment)]
            config = HomeServerConfig.load_config("synapse", paths)
        except Exception as e:  # noqa: BLE001 - Synapse raises ConfigError and whatever a module's parse_config raises
            print(f"FAILED {spec}: {type(e).__name__}: {e}")
            failed += 1
            continue
        modules = [f"{m.__module__}.{m.__qualname__}" for m, _ in config.modules.loaded_modules]
        print(f"ok {spec}: Synapse loads {', '.join(modules)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
