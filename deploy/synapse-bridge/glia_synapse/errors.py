"""The bridge's exceptions."""

from __future__ import annotations


class GliaFailure(Exception):
    """glia did not decide: it was unreachable, timed out, refused the request (an HTTP
    error), or answered something that is not a reply.

    The bridge resolves it by the callback's failure mode: fail open returns the callback's
    "no opinion" value; fail closed raises `GliaCallbackFailed`.
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        #: `unreachable`, `timeout`, `http_error`, `bad_reply` or `bad_request`.
        self.kind = kind


class GliaCallbackFailed(Exception):
    """Raised to Synapse by a callback that fails closed: Synapse treats it as any module
    exception (a 500 for most callbacks; 403 `M_UNKNOWN` for `on_create_room`)."""


class GliaModuleFailed(Exception):
    """glia decided that the request fails, as Synapse fails it when a module raises (a
    module timed out, crashed or raised under failure policy `error`): raised to Synapse as
    any module exception, never resolved by the bridge's `fail_open` (glia did decide)."""
