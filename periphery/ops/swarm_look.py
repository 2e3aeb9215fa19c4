"""One look at the swarm shared by every health gate that waits at the same time.

A gate needs its stack's services and their tasks. Asked gate by gate that is two Engine API calls
per gate and poll: a tier of 60 stacks makes the engine answer hundreds of requests a second
while it is busy starting their tasks. :class:`SwarmLook` asks once for every stack's services
and every task, and hands that look to each gate that asks while it is fresh.

A gate never takes a look that began before the gate did: a look from before its deploy could
show the old tasks still running and pass an update that has not started. A look under way that
began late enough is waited for; otherwise the gate starts a new one. A look that fails (or is
cancelled) is not shared: each gate waiting on it asks again itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import anyio

STACK_LABEL = "com.docker.stack.namespace"
FRESH = 0.2  # seconds a look is handed out after it began

Obj = Mapping[str, Any]


@dataclass
class _Look:
    began: float
    done: anyio.Event = field(default_factory=anyio.Event)
    services: Sequence[Obj] | None = None  # None: under way, failed or cancelled
    tasks: Sequence[Obj] = ()


class SwarmLook:
    """Services of every stack and their tasks, fetched once for the gates asking at once."""

    def __init__(self, fresh: float = FRESH) -> None:
        self.fresh = fresh
        self._latest: _Look | None = None
        self.fetched = 0  # looks taken from the engine (for tests)

    async def get(
        self, client: aiodocker.Docker, not_before: float
    ) -> tuple[Sequence[Obj], Sequence[Obj]]:
        """(services, tasks) from a look that began at ``not_before`` or later (anyio's clock)."""
        while True:
            look = self._latest
            now = anyio.current_time()
            if look is not None and look.began >= not_before and now - look.began <= self.fresh:
                if not look.done.is_set():
                    await look.done.wait()
                if look.services is not None:
                    return look.services, look.tasks
                if self._latest is look:  # it failed: this gate asks itself
                    self._latest = None
                continue
            return await self._fetch(client)

    async def _fetch(self, client: aiodocker.Docker) -> tuple[Sequence[Obj], Sequence[Obj]]:
        look = _Look(anyio.current_time())
        self._latest = look
        try:
            services = await client.services.list(filters={"label": STACK_LABEL})
            tasks = await client.tasks.list() if services else []
            look.services, look.tasks = services, tasks
            self.fetched += 1
            return services, tasks
        finally:
            look.done.set()
