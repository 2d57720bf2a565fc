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
    def call(self, name: str, args: Any) -> Any:
        """The reply (as `json.loads` reads it), or an int token when it waits."""
    def drive(self) -> None: ...
    def stop(self) -> None: ...

def decode_paths(name: str, args: Any) -> tuple[str | None, str]:
    """For tests: callback `name`'s request read straight from `args` (None when that path
    refuses them) and read through JSON values (or its error), as debug text."""
