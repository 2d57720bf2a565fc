"""The host's unit tests run its code on Twisted's asyncio reactor, as the host does: installed
here before anything imports Synapse (which imports the reactor)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from glia_python_host import reactor

LOOP = reactor.install()


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Runs `coroutine` on the shared loop (Twisted's reactor schedules on it too)."""
    return LOOP.run_until_complete(coroutine)


@pytest.fixture
def loop() -> asyncio.AbstractEventLoop:
    return LOOP
