from __future__ import annotations

from collections.abc import Callable

import anyio


async def eventually(predicate: Callable[[], bool], within: float, interval: float = 0.05) -> None:
    """Poll ``predicate`` until true; fail after ``within`` seconds (for state outside our loop)."""
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - the state lives in another process
            await anyio.sleep(interval)
