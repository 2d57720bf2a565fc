"""Types of the Rust extension (embed/src/lib.rs)."""

from collections.abc import Callable
from typing import Any

class DispatchFailed(Exception):
    """glia could not decide: args are (status, errcode, error)."""

class Runtime:
    """A running embedded glia."""

    def __init__(
        self,
        config_path: str,
        http: bool,
        notify: Callable[[int, Any, tuple[int, str, str] | None], None],
    ) -> None: ...
    def listing(self) -> str: ...
    def metrics(self) -> str | None:
        """glia's metrics in Prometheus's text format, or None when they are off."""
    def call(self, name: str, args: Any, traceparent: str | None = None, tracestate: str | None = None) -> Any:
        """The reply (as `json.loads` reads it), or an int token when it waits; with
        Synapse's W3C trace context, glia's span of the dispatch is a child of its span."""
    def drive(self) -> None: ...
    def stop(self) -> None: ...

def decode_paths(name: str, args: Any) -> tuple[str | None, str]:
    """For tests: callback `name`'s request read straight from `args` (None when that path
    refuses them) and read through JSON values (or its error), as debug text."""
