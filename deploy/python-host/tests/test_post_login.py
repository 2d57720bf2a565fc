"""The host's table of post-login callbacks: taken once, expiring, bounded."""

from __future__ import annotations

from glia_python_host.post_login import PostLogins


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def callback(login_result: object) -> None:
    """A post-login callback."""


def test_a_callback_is_taken_once_by_its_handle() -> None:
    held = PostLogins()
    handle = held.keep(callback)
    assert held.take("not a handle") is None
    assert held.take(handle) is callback
    assert held.take(handle) is None
    assert len(held) == 0


def test_a_callback_whose_login_never_completes_expires() -> None:
    clock = Clock()
    held = PostLogins(ttl_s=300, clock=clock)
    old = held.keep(callback)
    clock.now = 200
    young = held.keep(callback)
    clock.now = 301
    assert len(held) == 1
    assert held.take(old) is None
    assert held.take(young) is callback


def test_the_table_is_bounded_the_oldest_going_first() -> None:
    held = PostLogins(max_held=3)
    handles = [held.keep(callback) for _ in range(5)]
    assert len(held) == 3
    assert [held.take(h) is callback for h in handles] == [False, False, True, True, True]
