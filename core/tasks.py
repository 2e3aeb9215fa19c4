"""Parts that own background work: ``run`` holds an anyio task group until cancelled (readiness
through ``task_status.started()``), ``spawn`` starts work in it. Work spawned before ``run``
started, or after it stopped, is refused (``False``), never silently lost in a group that is
gone."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc


class TaskOwner:
    _tg: anyio.abc.TaskGroup | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the work ``spawn`` starts, until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    @property
    def running(self) -> bool:
        return self._tg is not None

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
        """Start ``fn(*args)`` in the group; False when the owner is not running."""
        tg = self._tg
        if tg is None:
            return False
        tg.start_soon(fn, *args)
        return True
