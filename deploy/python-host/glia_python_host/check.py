"""`glia check-config`'s Python half: runs each Python module's `parse_config` as Synapse
would at start-up, without constructing anything.

glia writes `{"modules": [{"index": N, "module": "pkg.Class", "config": {...}}, ...]}` to the
host's standard input; the host prints `{"errors": [{"index": N, "path": [...], "message"}]}`,
the first error of each module whose class cannot be imported or whose config it refuses.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from glia_python_host import loader


def check(request: Any) -> dict[str, Any]:
    """The errors in the modules of one request."""
    errors = []
    for entry in request.get("modules") or ():
        try:
            loader.parse(entry.get("module"), entry.get("config"))
        except loader.LoadError as e:
            errors.append({"index": entry.get("index"), **e.to_json()})
    return {"errors": errors}


def run() -> int:
    """Reads the request from standard input, writes the errors to standard output (which
    the modules' own output cannot reach: it goes to standard error)."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        request = json.load(sys.stdin)
    except ValueError as e:
        out.write(json.dumps({"errors": [{"index": None, "path": [], "message": f"unreadable request: {e}"}]}))
        return 2
    out.write(json.dumps(check(request)) + "\n")
    out.flush()
    return 0
