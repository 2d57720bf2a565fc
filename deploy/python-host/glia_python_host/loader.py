"""Loading a module as Synapse loads it: Synapse's own `load_module` (import the class named by
the dotted path, `parse_config`, its errors mapped to `ConfigError`s with a path), then
`cls(config, api)`.

Errors are reported in one shape, `LoadError`: where in the module's entry (`module` for an
import error, `config` plus the `ConfigError`'s own path for a bad config, nothing for a
constructor that raised) and what, with the causes Synapse chains to the error.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadError(Exception):
    """A module that cannot be loaded: `path` inside its entry (`["config", "rules", "0"]`),
    and the message."""

    message: str
    path: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        where = ".".join(self.path)
        return f"{where}: {self.message}" if where else self.message

    def to_json(self) -> dict[str, Any]:
        """The error as glia reads it."""
        return {"path": self.path, "message": self.message}


def _explain(error: BaseException) -> str:
    """A `ConfigError`'s message followed by the causes Synapse chained to it."""
    parts = [str(getattr(error, "msg", error))]
    cause = error.__cause__
    while cause is not None:
        parts.append(str(cause) or type(cause).__name__)
        cause = cause.__cause__
    return ": ".join(p for p in parts if p)


def parse(module: str, config: Mapping[str, Any] | None) -> tuple[type, Any]:
    """Imports the class `module` names and runs its `parse_config` on `config`, as Synapse
    does; returns the class and the parsed config. Raises `LoadError`."""
    from synapse.config._base import ConfigError
    from synapse.util.module_loader import load_module

    if not isinstance(module, str) or "." not in module:
        raise LoadError("expected the module's class as a dotted path, e.g. my_module.MyModule", ["module"])
    try:
        return load_module({"module": module, "config": dict(config or {})}, ())
    except ConfigError as e:
        raise LoadError(_explain(e), [str(p) for p in e.path or ()]) from e
    except (ImportError, AttributeError) as e:
        raise LoadError(f"cannot load {module}: {type(e).__name__}: {e}", ["module"]) from e
    except Exception as e:
        raise LoadError(f"loading {module} failed: {type(e).__name__}: {e}", ["module"]) from e


def construct(cls: type, config: Any, api: Any) -> Any:
    """`cls(config, api)`, as Synapse constructs a module; raises `LoadError` with the
    traceback's last lines when the constructor raises."""
    try:
        return cls(config, api)
    except Exception as e:
        where = "".join(traceback.format_exception_only(type(e), e)).strip()
        raise LoadError(f"the module's constructor raised {where}") from e
