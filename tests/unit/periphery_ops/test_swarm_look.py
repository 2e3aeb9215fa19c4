"""The look at the swarm that the health gates waiting at once share (pure logic, a fake engine)."""

from __future__ import annotations

from typing import Any, cast

import aiodocker
import anyio
import pytest

from periphery.ops.swarm_look import SwarmLook

pytestmark = pytest.mark.anyio


class _List:
    def __init__(self, engine: FakeEngine, what: str) -> None:
        self.engine, self.what = engine, what

    async def list(self, filters: Any = None) -> list[dict[str, Any]]:
        self.engine.calls.append(self.what)
        await anyio.sleep(self.engine.delay)
        if self.engine.fail:
            self.engine.fail -= 1
            raise aiodocker.DockerError(500, {"message": "engine busy"})
        return list(getattr(self.engine, self.what))


class FakeEngine:
    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.fail = 0
        self.calls: list[str] = []
        self.services = [{"ID": "s1", "Spec": {"Name": "web_web"}}]
        self.tasks = [{"ID": "t1", "ServiceID": "s1"}]

    def client(self) -> aiodocker.Docker:
        return cast(aiodocker.Docker, _Client(self))


class _Client:
    def __init__(self, engine: FakeEngine) -> None:
        self.services = _List(engine, "services")
        self.tasks = _List(engine, "tasks")


async def test_gates_asking_at_once_share_one_look() -> None:
    engine, look = FakeEngine(), SwarmLook()
    begin = anyio.current_time()
    got: list[Any] = []

    async def gate() -> None:
        got.append(await look.get(engine.client(), begin))

    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(gate)
    assert engine.calls == ["services", "tasks"]  # two API calls for thirty gates
    assert look.fetched == 1
    assert all(g == (engine.services, engine.tasks) for g in got)


async def test_a_gate_never_takes_a_look_that_began_before_it() -> None:
    engine, look = FakeEngine(delay=0), SwarmLook(fresh=60)
    await look.get(engine.client(), anyio.current_time())
    engine.services = [{"ID": "s2", "Spec": {"Name": "web_new"}}]  # the deploy changed it
    later = anyio.current_time() + 0.001
    await anyio.sleep(0.002)
    services, _ = await look.get(engine.client(), later)
    assert services == engine.services  # a new look, though the old one is still "fresh"
    assert look.fetched == 2


async def test_a_look_is_not_handed_out_once_stale() -> None:
    engine, look = FakeEngine(delay=0), SwarmLook(fresh=0.05)
    begin = anyio.current_time()
    await look.get(engine.client(), begin)
    await look.get(engine.client(), begin)
    assert look.fetched == 1
    await anyio.sleep(0.08)
    await look.get(engine.client(), begin)
    assert look.fetched == 2


async def test_a_failed_look_is_not_shared_each_waiter_asks_again() -> None:
    engine, look = FakeEngine(), SwarmLook()
    engine.fail = 1  # the first look fails
    begin = anyio.current_time()
    results: list[Any] = []
    errors: list[BaseException] = []

    async def gate() -> None:
        try:
            results.append(await look.get(engine.client(), begin))
        except aiodocker.DockerError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(gate)
    assert len(errors) == 1  # the gate whose look failed sees the error (and polls again)
    assert len(results) == 4  # the others asked again, once, together
    assert look.fetched == 1
    assert engine.calls.count("services") == 2


async def test_a_cancelled_look_does_not_leave_waiters_hanging() -> None:
    engine, look = FakeEngine(delay=0.2), SwarmLook()
    begin = anyio.current_time()
    got: list[Any] = []

    async def waiter() -> None:
        got.append(await look.get(engine.client(), begin))

    async with anyio.create_task_group() as tg:
        with anyio.move_on_after(0.05):  # the first asker gives up mid-look
            tg.start_soon(waiter)  # waits on the first look
            await look.get(engine.client(), begin)
    assert len(got) == 1
