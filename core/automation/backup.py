"""``BackupCoreDatabase``: a consistent copy of the core's SQLite state, taken while the core
runs, into ``data_dir/backups``, keeping the newest ``max_backups``.

Komodo's does ``km database backup`` (``bin/core/src/api/execute/maintenance.rs``): a folder
per backup, named for its time (``2025-08-12_03-00-01``), the oldest pruned beyond
``max_backups`` (14 by default; 0 keeps them all), one backup at a time. Here the state is one
SQLite file, copied with SQLite's online backup API from a connection of its own: one read
transaction (the database is in WAL mode, so writers go on meanwhile) gives a snapshot of one
moment. The copy is written next to its final name, checked (``PRAGMA quick_check``), made
private (0600) and renamed into place (``stackward-2025-08-12_03-00-01.sqlite3``), so a
backup that exists is a whole one. Only files of that name are ever pruned.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

from core.events.bus import EventBus
from core.events.model import BackupMade, Kind
from core.exceptions import CoreError

log = logging.getLogger(__name__)

NAME = re.compile(r"stackward-(\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})(?:-\d+)?\.sqlite3")
Say = Callable[[str], Awaitable[None]]


class BackupFailed(CoreError):
    """The copy could not be made (the message says why); nothing partial is left."""


@dataclass(frozen=True)
class Made:
    path: Path
    size: int
    seconds: float
    removed: list[Path]


def backup_name(now: float) -> str:
    return "stackward-" + time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now)) + ".sqlite3"


def backups(directory: Path) -> list[Path]:
    """The backups in ``directory``, oldest first (by the time in their name)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if NAME.fullmatch(p.name) and p.is_file()]
    return sorted(found, key=lambda p: p.name)


def make_backup(database: Path, directory: Path, keep: int, now: float | None = None) -> Made:
    """Copy ``database`` into ``directory``; prune beyond ``keep`` (0: keep all). Blocking."""
    started = time.monotonic()
    now = time.time() if now is None else now
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BackupFailed(f"cannot make {directory}: {exc.strerror or exc}") from exc
    final = directory / backup_name(now)
    n = 1
    while final.exists():
        final = directory / backup_name(now).replace(".sqlite3", f"-{n}.sqlite3")
        n += 1
    partial = directory / f".{final.name}.partial"
    try:
        src = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)  # one step: one read transaction, one moment
                check = dst.execute("PRAGMA quick_check").fetchone()
            finally:
                dst.close()
        finally:
            src.close()
        if not check or check[0] != "ok":
            raise BackupFailed(f"the copy does not check out: {check[0] if check else 'no answer'}")
        os.chmod(partial, 0o600)
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, final)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"copying {database}: {exc}") from exc
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BackupFailed(f"writing {final}: {exc.strerror or exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    removed: list[Path] = []
    if keep > 0:
        existing = backups(directory)
        for old in existing[: max(0, len(existing) - keep)]:
            try:
                old.unlink()
                removed.append(old)
            except OSError as exc:
                log.warning("backup %s not removed: %s", old, exc)
    return Made(final, final.stat().st_size, time.monotonic() - started, removed)


class Backups:
    """The part that makes backups for procedures (one at a time, as Komodo's lock)."""

    def __init__(self, database: Path, data_dir: Path, keep: int, events: EventBus) -> None:
        self.database = database
        self.directory = data_dir / "backups"
        self.keep = keep
        self.events = events
        self._lock = anyio.Lock()

    async def backup(self, say: Say) -> None:
        if self._lock.locked():
            raise BackupFailed("Backup already in progress...")
        async with self._lock:
            try:
                made = await anyio.to_thread.run_sync(
                    make_backup, self.database, self.directory, self.keep
                )
            except BackupFailed as exc:
                raise BackupFailed(f"BackupCoreDatabase: {exc}") from exc
        self.events.publish(
            Kind.BACKUP_MADE,
            "",
            BackupMade(
                path=str(made.path),
                bytes=made.size,
                seconds=round(made.seconds, 3),
                removed=[p.name for p in made.removed],
            ),
        )
        await say(f"backup {made.path} ({made.size} bytes, {made.seconds:.2f}s)")
        if made.removed:
            await say(
                f"removed {len(made.removed)} older backup(s) (max_backups = {self.keep}): "
                + ", ".join(p.name for p in made.removed)
            )
