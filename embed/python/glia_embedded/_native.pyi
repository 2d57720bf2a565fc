"""Types of the Rust extension (embed/src/lib.rs)."""

from collections.abc import Callable

class DispatchFailed(Exception):
    """glia could not decide: args are (status, errcode, error)."""

class Runtime:
    """A running embedded glia."""

    def __init__(
        self,
        config_path: str,
        http: bool,
        notify: Callable[[int, str | None, tuple[int, str, str] | None], None],
    ) -> None: ...
    def listing(self) -> str: ...
    def call(self, name: str, body: str) -> str | int: ...
    def drive(self) -> None: ...
    def stop(self) -> None: ...
