"""An exclusive, cancellable file lock with a deadline (``flock``; works across processes)."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from periphery.exceptions import CommandTimeout

log = logging.getLogger(__name__)

POLL = 0.1


@asynccontextmanager
async def file_lock(path: Path, time_limit: float) -> AsyncIterator[None]:
    """Hold ``flock(path, LOCK_EX)``; wait at most ``time_limit`` seconds for it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with anyio.fail_after(time_limit):
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await anyio.sleep(POLL)
    except TimeoutError as exc:
        os.close(fd)
        raise CommandTimeout(
            f"lock {path} still held by another deploy after {time_limit:g}s"
        ) from exc
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock
