"""A real core served in-process on loopback, and a small client of its API, for tests and
benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import anyio.abc
from aiohttp import web

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
class CoreClient:
    url: str
    token: str

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            async with session.request(
                method,
                self.url + path,
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
            ) as response:
                return response.status, await response.json()

    async def sync(self, name: str = "local") -> dict[str, Any]:
        status, plan = await self.call("POST", f"/api/syncs/{name}/plan")
        assert status == 201, plan
        status, applied = await self.call(
            "POST", f"/api/syncs/{name}/apply", {"plan_id": plan["id"]}
        )
        assert status == 200, applied
        return applied

    async def wait_run(self, run_id: int, within: float = 120) -> dict[str, Any]:
        with anyio.fail_after(within):
            while True:
                status, run = await self.call("GET", f"/api/runs/{run_id}")
                assert status == 200, run
                if run["status"] != "running":
                    return run
                await anyio.sleep(0.2)

    async def wait_deployed(
        self, stack: str, commit: str, within: float = 60
    ) -> dict[str, dict[str, Any]]:
        """Wait until ``stack``'s last deploy is healthy at ``commit``; every stack's last one."""
        with anyio.fail_after(within):
            while True:
                status, listing = await self.call("GET", "/api/stacks")
                assert status == 200, listing
                last = {s["name"]: s["last_deploy"] for s in listing["stacks"]}
                mine = last.get(stack) or {}
                if mine.get("commit") == commit and mine.get("status") == "healthy":
                    return last
                await anyio.sleep(0.2)
