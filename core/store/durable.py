"""Closing writes that must land: a deploy's, a run's or a procedure step's outcome is not
lost to a full disk or a locked database. The write is retried in a thread, with backoff,
logging once, until it lands; callers that stop bound it with a shielded deadline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from core.exceptions import StoreError

log = logging.getLogger(__name__)

DURABLE_RETRY = (0.5, 10.0)  # first and longest wait between retries of a closing write
STOP_WRITE = 5.0  # how long closing writes may take while the core stops

T = TypeVar("T")


async def durably(what: str, write: Callable[[], T]) -> T:
    """Run a blocking store write in a thread until it lands. Retries with backoff, logging
    once; cancellation (a caller's deadline) ends the retries."""
    delay, warned = DURABLE_RETRY[0], False
    while True:
        try:
            return await anyio.to_thread.run_sync(write)
        except StoreError as exc:
            if not warned:
                log.error("%s not recorded yet (retrying until it can be): %s", what, exc)
                warned = True
            await anyio.sleep(delay)
            delay = min(delay * 2, DURABLE_RETRY[1])
