"""A real core served in-process on loopback, and a small client of its API, for tests and
benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
from aiohttp import web

from core import client
from core.config import CoreConfig
from core.server import serve

START_TIMEOUT = 20.0


async def start_core(
    tg: anyio.abc.TaskGroup,
    config: CoreConfig,
    setup: Sequence[Callable[[web.Application], None]] = (),
) -> tuple[int, web.Application]:
    """Serve ``config`` in ``tg``; its port and app once it listens (cancel ``tg`` to stop)."""
    apps: list[web.Application] = []
    ports: list[int] = []
    ready = anyio.Event()

    def started(port: int) -> None:
        ports.append(port)
        ready.set()

    tg.start_soon(lambda: serve(config, setup=[*setup, apps.append], started=started))
    with anyio.fail_after(START_TIMEOUT):
        await ready.wait()
    return ports[0], apps[0]


@dataclass
class CoreClient(client.CoreClient):
    """The core's client (core/client.py), with ``call`` answering ``(status, body)`` whatever
    the status, for tests that assert on both."""

    url: str
    token: str

    def __post_init__(self) -> None:
        client.CoreClient.__init__(self, self.url, self.token)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.request(method, path, body)
