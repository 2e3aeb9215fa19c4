"""A test subscriber of a core's ``/ws/events``: collects every event in the background."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import msgspec


class Watcher:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.controls: list[dict[str, Any]] = []

    async def wait(
        self, test: Callable[[dict[str, Any]], bool], within: float = 30.0, what: str = ""
    ) -> dict[str, Any]:
        """The first event (seen so far or to come) that passes ``test``."""
        try:
            with anyio.fail_after(within):
                while True:
                    for e in self.events:
                        if test(e):
                            return e
                    await anyio.sleep(0.05)
        except TimeoutError:
            kinds = [(e["kind"], e["resource"]) for e in self.events[-30:]]
            raise AssertionError(f"no event {what} within {within}s; last: {kinds}") from None

    def of(self, kind: str, resource: str = "") -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["kind"] == kind and (not resource or e["resource"] == resource)
        ]


@asynccontextmanager
async def watch(url: str, token: str, query: str = "") -> AsyncIterator[Watcher]:
    """Follow ``url``'s event stream (``http://host:port``) while the block runs."""
    watcher = Watcher()
    ws_url = url.replace("http://", "ws://") + "/ws/events" + (f"?{query}" if query else "")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"}) as ws,
        anyio.create_task_group() as tg,
    ):

        async def read() -> None:
            async for msg in ws:
                data = msgspec.json.decode(msg.data)
                (watcher.controls if "control" in data else watcher.events).append(data)

        tg.start_soon(read)
        yield watcher
        tg.cancel_scope.cancel()
