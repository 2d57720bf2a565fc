"""Checks ServiceMonitor manifests against the Prometheus Operator's CRD schema, which
kubernetes-validate does not know (it only warns): the models of
cloudcoil.models.prometheus_operator are generated from the operator's CRDs. They ignore keys
they do not know, so a key that the model drops on the way through is reported too (as
`kubernetes-validate --strict` does for the built-in kinds).

    python check_servicemonitor.py FILE...
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from cloudcoil.models.prometheus_operator import v1
from pydantic import ValidationError


def unknown_keys(given: Any, kept: Any, path: str = "") -> list[str]:
    """Keys of `given` that are missing from `kept` (the model's dump), as paths."""
    found: list[str] = []
    if isinstance(given, dict) and isinstance(kept, dict):
        for key, value in given.items():
            here = f"{path}.{key}"
            found += [here] if key not in kept else unknown_keys(value, kept[key], here)
    elif isinstance(given, list) and isinstance(kept, list):
        # The model keeps every item of a list, in order.
        for i, (g, k) in enumerate(zip(given, kept, strict=True)):
            found += unknown_keys(g, k, f"{path}[{i}]")
    return found


def main(files: list[str]) -> int:
    failed = 0
    for file in files:
        for doc in yaml.safe_load_all(Path(file).read_text()):
            name = f"{file}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if doc.get("kind") != "ServiceMonitor" or doc.get("apiVersion") != "monitoring.coreos.com/v1":
                print(f"FAILED {name}: not a monitoring.coreos.com/v1 ServiceMonitor")
                failed += 1
                continue
            try:
                model = v1.ServiceMonitor.model_validate(doc)
            except ValidationError as e:
                print(f"FAILED {name}: {e}")
                failed += 1
                continue
            unknown = unknown_keys(doc, model.model_dump(by_alias=True, exclude_unset=True))
            if unknown:
                print(f"FAILED {name}: unknown keys {unknown}")
                failed += 1
            else:
                print(f"ok {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
