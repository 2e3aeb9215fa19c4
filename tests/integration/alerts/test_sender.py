"""The sender against a real HTTP endpoint on loopback (no engine): retried with backoff on a
5xx or 429, not on a 4xx, one queue per alerter (a slow one does not hold another), bounded."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from aiohttp import web

from core.alerts import model as m
from core.alerts.endpoints import request_for
from core.alerts.sender import AlertSender, DeliverySettings
from core.events.bus import EventBus
from core.events.model import Filter

pytestmark = pytest.mark.anyio

ALERT = m.Alert(1, m.OK, m.Target("Stack", "web"), m.STACK_AUTO_UPDATED, {"name": "web"})


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, dict[str, list[Any]]]]:
    """``/status/CODE,CODE,...``: answers those statuses in turn (then 200); ``/slow``: 2 s."""
    seen: dict[str, list[Any]] = {}

    async def handle(request: web.Request) -> web.Response:
        path = request.match_info["path"]
        calls = seen.setdefault(path, [])
        calls.append(time.monotonic())
        if path == "slow":
            await anyio.sleep(2)
            return web.Response(text="ok")
        codes = [int(c) for c in path.split(",")]
        code = codes[len(calls) - 1] if len(calls) <= len(codes) else 200
        return web.Response(status=code, text=f"answer {code}")

    app = web.Application()
    app.router.add_post("/{path}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


async def test_retries_backoff_and_refusals(endpoint: tuple[str, dict[str, list[Any]]]) -> None:
    base, seen = endpoint
    bus = EventBus(None)
    sender = AlertSender(bus, DeliverySettings(timeout=5, retries=3, backoff=0.1))
    with bus.subscribe(Filter(kinds=("alert",))) as sub:
        async with anyio.create_task_group() as tg:
            await tg.start(sender.run)
            for name, path in (
                ("flaky", "503,429"),
                ("refused", "400"),
                ("down", "500,500,500,500"),
            ):
                out = request_for("Custom", f"{base}/{path}", ALERT)
                assert out is not None
                sender.enqueue(name, ALERT, out)
            with anyio.fail_after(10):
                while len(sub.subscriber.queue) < 3:
                    await sub.subscriber.wait()
            tg.cancel_scope.cancel()
        done = {e.data()["alerter"]: (e.kind, e.data()) for e in sub.subscriber.take(10)}
    assert done["flaky"][0] == "alert.sent" and done["flaky"][1]["attempts"] == 3
    gaps = [b - a for a, b in zip(seen["503,429"], seen["503,429"][1:], strict=False)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # backoff, doubled
    assert done["refused"] == (
        "alert.failed",
        {
            "alerter": "refused",
            "type": "StackAutoUpdated",
            "target": "stack:web",
            "attempts": 1,  # a 4xx is not tried again
            "error": "the endpoint answered 400: answer 400",
            "seconds": done["refused"][1]["seconds"],
        },
    )
    assert done["down"][0] == "alert.failed" and done["down"][1]["attempts"] == 4
    assert base not in str(done)  # never the URL


async def test_a_slow_alerter_holds_only_its_own_queue_which_is_bounded(
    endpoint: tuple[str, dict[str, list[Any]]],
) -> None:
    base, seen = endpoint
    bus = EventBus(None)
    sender = AlertSender(bus, DeliverySettings(timeout=5, retries=0, queue=2))
    slow = request_for("Custom", f"{base}/slow", ALERT)
    quick = request_for("Custom", f"{base}/200", ALERT)
    assert slow is not None and quick is not None
    with bus.subscribe(Filter(kinds=("alert",))) as sub:
        async with anyio.create_task_group() as tg:
            await tg.start(sender.run)
            for _ in range(5):  # one in flight, 2 waiting, 2 dropped (the oldest)
                sender.enqueue("slow", ALERT, slow)
                await anyio.sleep(0.01)
            started = time.monotonic()
            sender.enqueue("quick", ALERT, quick)
            with anyio.fail_after(5):
                while not any(e.data().get("alerter") == "quick" for e in sub.subscriber.queue):
                    await sub.subscriber.wait()
            assert time.monotonic() - started < 1.0  # not behind the slow one
            tg.cancel_scope.cancel()
        events = [(e.kind, e.data()) for e in sub.subscriber.take(20)]
    dropped = [d for k, d in events if k == "alert.failed" and d["alerter"] == "slow"]
    assert [d["error"] for d in dropped] == ["dropped: 2 waiting", "dropped: 2 waiting"]
    assert len(seen["slow"]) == 1
