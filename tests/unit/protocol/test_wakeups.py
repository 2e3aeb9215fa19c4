"""The transport's wakeups (protocol/transport.py), on a bare event loop: every sender waiting
for room in the outbox is woken, a cancelled one is forgotten."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from protocol.transport import _WakeupAll

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the transport is bound to asyncio through aiohttp


async def test_every_waiter_is_woken_and_a_cancelled_one_is_forgotten() -> None:
    wakeup = _WakeupAll()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await wakeup.wait()
        woken.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(waiter, n)
        with anyio.move_on_after(0.01):
            await wakeup.wait()  # a waiter that gives up
        await anyio.lowlevel.checkpoint()
        assert len(wakeup._futures) == 3
        wakeup.set()
    assert sorted(woken) == [0, 1, 2]
    assert wakeup._futures == []
    wakeup.set()  # nobody waiting: nothing to do
