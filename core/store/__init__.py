"""The core's state in SQLite (standard library), in WAL mode, in the core's ``data_dir``.

Holds the applied resources (canonical config and hash), plans and sync runs, and a *revision*
counter that every apply bumps. A plan records the revision it was made against; an apply runs in
one ``BEGIN IMMEDIATE`` transaction that first checks that revision, so of two racing applies one
wins and the other is refused (:class:`~core.exceptions.PlanStale`), and a crash in the middle
leaves the old state or the new one, never a mix.

A :class:`Store` holds one connection guarded by a lock, so it may be used from worker threads
(``anyio.to_thread``); separate processes or Stores on one file are serialised by SQLite.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from core.exceptions import PlanNotFound, PlanStale, StoreError
from core.plan.models import Plan, ResourceChange, StoredResource
from core.store.migrations import MIGRATIONS

log = logging.getLogger(__name__)

DB_NAME = "stackward.db"
KEEP_UNAPPLIED_PLANS = 50
_plan_decoder = msgspec.json.Decoder(Plan)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])


class SyncRun(msgspec.Struct):
    id: int
    sync: str
    plan_id: str | None
    started_at: float
    finished_at: float | None
    status: str
    message: str
    revision: int | None


def _owner_only(path: Path) -> None:
    """Create the database file 0600, or take group and others' access off the files."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        return
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and file.stat().st_mode & 0o077:
            file.chmod(0o600)


class Store:
    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0, check: bool = True
    ) -> None:
        self.path = Path(path)
        try:
            # Deploy logs are kept here: the directory 0700 when made, the files 0600 (SQLite
            # gives the WAL and shared-memory files the database's mode).
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.path.exists() and self.path.stat().st_size == 0 and not _has_wal(self.path):
                raise StoreError(
                    f"{self.path} is empty (0 bytes): a start that failed while creating it, or"
                    " a database lost or restored wrong. Restore it from a backup, or delete it"
                    " to start with no state (every stack then deploys again)"
                )
            _owner_only(self.path)
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            if check:
                self._check_integrity()
        except sqlite3.Error as exc:
            raise StoreError(_unusable(self.path, exc)) from exc
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open the state database: {exc}") from exc
        self._lock = threading.RLock()
        self._migrate()

    def _check_integrity(self) -> None:
        """``PRAGMA quick_check`` at start: a corrupted file is refused now, with what to do,
        rather than failing later in the middle of a deploy."""
        rows = self._db.execute("PRAGMA quick_check(5)").fetchall()
        problems = [str(r[0]) for r in rows if str(r[0]) != "ok"]
        if problems:
            self._db.close()
            raise StoreError(
                f"{self.path} is corrupted ({'; '.join(problems)[:300]}). Stop the core, then"
                " restore the database from a backup, or try `sqlite3 stackward.db .recover |"
                " sqlite3 recovered.db` and move recovered.db in its place"
            )

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str]) -> Store:
        return cls(Path(data_dir) / DB_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- schema -------------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._lock:
            current = self._db.execute("PRAGMA user_version").fetchone()[0]
            for version, sql in MIGRATIONS:
                if version <= current:
                    continue
                log.info("state database %s: applying migration %s", self.path, version)
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    # Re-check under the write lock: another process may have migrated.
                    if self._db.execute("PRAGMA user_version").fetchone()[0] >= version:
                        self._db.execute("ROLLBACK")
                        continue
                    for statement in _statements(sql):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {int(version)}")
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._db.execute("ROLLBACK")
                    raise StoreError(f"{self.path}: migration {version} failed: {exc}") from exc

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error."""
        with self._write() as db:
            yield db

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads, under the store's lock. SQLite's errors come out as
        ``StoreError``."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(_unusable(self.path, exc)) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; any failure rolls it back (a full disk may
        fail the ``COMMIT`` itself) and SQLite's errors come out as ``StoreError``."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(_unusable(self.path, exc)) from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(_unusable(self.path, exc)) from exc
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:  # nothing more to do: the next BEGIN will say
                log.warning("%s: rollback failed: %s", self.path, exc)

    # -- reads --------------------------------------------------------------------------------
    def revision(self) -> int:
        with self.read() as db:
            row = db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()
            return int(row[0])

    def resources(self) -> dict[tuple[str, str], StoredResource]:
        with self.read() as db:
            rows = db.execute(
                "SELECT kind, name, sync, config, hash FROM resources ORDER BY kind, name"
            ).fetchall()
        return {
            (k, n): StoredResource(k, n, s, _dict_decoder.decode(c), h) for k, n, s, c, h in rows
        }

    def snapshot(self) -> tuple[int, dict[tuple[str, str], StoredResource]]:
        """Revision and resources read in one transaction (consistent with each other)."""
        with self.read() as db:
            db.execute("BEGIN")
            try:
                rev = self.revision()
                res = self.resources()
            finally:
                db.execute("COMMIT")
        return rev, res

    def sync_commit(self, sync: str) -> str:
        """The commit of a git-backed sync's files at its last apply ("" when none)."""
        with self.read() as db:
            row = db.execute(
                "SELECT value FROM meta WHERE key = ?", (f"sync_commit:{sync}",)
            ).fetchone()
        return str(row[0]) if row else ""

    def tiers(self) -> list[str]:
        """The tier order of every sync's files, merged (each tier where it first appears)."""
        with self.read() as db:
            rows = db.execute(
                "SELECT key, value FROM meta WHERE key LIKE 'sync_tiers:%' ORDER BY"
                " key = 'sync_tiers:local' DESC, key"
            ).fetchall()
        out: list[str] = []
        for _, value in rows:
            for tier in msgspec.json.decode(value, type=list[str]):
                if tier not in out:
                    out.append(tier)
        return out

    def defined_by(self) -> dict[tuple[str, str], set[str]]:
        """Which syncs' files define each resource (as of each sync's last apply)."""
        with self.read() as db:
            rows = db.execute("SELECT sync, kind, name FROM sync_defines").fetchall()
        out: dict[tuple[str, str], set[str]] = {}
        for sync, kind, name in rows:
            out.setdefault((str(kind), str(name)), set()).add(str(sync))
        return out

    def fingerprint_key(self) -> bytes:
        """A random key of this database, for keyed fingerprints of secret values."""
        with self.read() as db:
            row = db.execute("SELECT value FROM meta WHERE key='fingerprint_key'").fetchone()
            if row is not None:
                return bytes.fromhex(row[0])
            with self._write() as db:
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('fingerprint_key', ?)",
                    (secrets.token_hex(32),),
                )
                row = db.execute("SELECT value FROM meta WHERE key='fingerprint_key'").fetchone()
            return bytes.fromhex(row[0])

    # -- plans --------------------------------------------------------------------------------
    def save_plan(self, plan: Plan) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO plans (id, sync, base_revision, created_at, body)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    plan.id,
                    plan.sync,
                    plan.base_revision,
                    plan.created_at,
                    msgspec.json.encode(plan).decode(),
                ),
            )
            # Keep the newest unapplied plans of a sync; applied ones stay as history.
            db.execute(
                "DELETE FROM plans WHERE sync = ? AND applied_at IS NULL AND id NOT IN"
                " (SELECT id FROM plans WHERE sync = ? AND applied_at IS NULL"
                "  ORDER BY created_at DESC LIMIT ?)",
                (plan.sync, plan.sync, KEEP_UNAPPLIED_PLANS),
            )

    def get_plan(self, plan_id: str) -> Plan:
        with self.read() as db:
            row = db.execute(
                "SELECT body, applied_at FROM plans WHERE id = ?", (plan_id,)
            ).fetchone()
        if row is None:
            raise PlanNotFound(f'no plan has the id "{plan_id}"; make one with stackward plan')
        plan = _plan_decoder.decode(row[0])
        plan.applied_at = row[1]
        return plan

    def sync_runs(self, sync: str, limit: int = 20) -> list[SyncRun]:
        with self.read() as db:
            rows = db.execute(
                "SELECT id, sync, plan_id, started_at, finished_at, status, message, revision"
                " FROM sync_runs WHERE sync = ? ORDER BY id DESC LIMIT ?",
                (sync, limit),
            ).fetchall()
        return [SyncRun(*r) for r in rows]

    # -- apply --------------------------------------------------------------------------------
    def apply(
        self,
        plan: Plan,
        *,
        _between: Callable[[int], None] | None = None,
    ) -> int:
        """Apply ``plan`` in one transaction; returns the new revision.

        Raises :class:`PlanStale` when the state moved since the plan was made or the plan was
        applied already. ``_between`` is a test hook called after each written change.
        """
        now = time.time()
        with self._write() as db:
            rev = int(db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()[0])
            applied = db.execute("SELECT applied_at FROM plans WHERE id = ?", (plan.id,)).fetchone()
            if applied is not None and applied[0] is not None:
                raise PlanStale(f"plan {plan.id} was applied already; make a new plan")
            if rev != plan.base_revision:
                raise PlanStale(
                    f"plan {plan.id} was made at state revision {plan.base_revision}, the state"
                    f" is now at {rev} (another apply ran); make a new plan"
                )
            for i, change in enumerate(plan.changes):
                self._apply_change(db, plan.sync, change, now)
                if _between is not None:
                    _between(i)
            new_rev = rev + 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'revision'", (str(new_rev),))
            if plan.commit:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (f"sync_commit:{plan.sync}", plan.commit),
                )
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (f"sync_tiers:{plan.sync}", msgspec.json.encode(plan.tiers).decode()),
            )
            db.execute("DELETE FROM sync_defines WHERE sync = ?", (plan.sync,))
            db.executemany(
                "INSERT OR IGNORE INTO sync_defines (sync, kind, name) VALUES (?, ?, ?)",
                [(plan.sync, k, n) for k, n in plan.defines],
            )
            db.execute(
                "INSERT OR IGNORE INTO plans (id, sync, base_revision, created_at, body)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    plan.id,
                    plan.sync,
                    plan.base_revision,
                    plan.created_at,
                    msgspec.json.encode(plan).decode(),
                ),
            )
            db.execute("UPDATE plans SET applied_at = ? WHERE id = ?", (now, plan.id))
            counts = plan.counts()
            db.execute(
                "INSERT INTO sync_runs (sync, plan_id, started_at, finished_at, status, message,"
                " revision) VALUES (?, ?, ?, ?, 'applied', ?, ?)",
                (
                    plan.sync,
                    plan.id,
                    now,
                    time.time(),
                    "{create} created, {update} updated, {delete} deleted".format(**counts),
                    new_rev,
                ),
            )
        log.info("applied plan %s of sync %s: revision %s", plan.id, plan.sync, new_rev)
        return new_rev

    @staticmethod
    def _apply_change(db: sqlite3.Connection, sync: str, c: ResourceChange, now: float) -> None:
        row = db.execute(
            "SELECT hash FROM resources WHERE kind = ? AND name = ?", (c.kind, c.name)
        ).fetchone()
        current = row[0] if row else None
        if current != c.old_hash:
            raise PlanStale(f"{c.kind} {c.name} changed since the plan was made; make a new plan")
        if c.action == "delete":
            db.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (c.kind, c.name))
            return
        assert c.new_config is not None and c.new_hash is not None
        db.execute(
            "INSERT INTO resources (kind, name, sync, config, hash, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (kind, name) DO UPDATE SET sync = excluded.sync,"
            " config = excluded.config, hash = excluded.hash, updated_at = excluded.updated_at",
            (c.kind, c.name, sync, msgspec.json.encode(c.new_config).decode(), c.new_hash, now),
        )


def _has_wal(path: Path) -> bool:
    wal = path.with_name(path.name + "-wal")
    return wal.exists() and wal.stat().st_size > 0


def _unusable(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return (
            f"{path} is not a usable SQLite database ({text}). Stop the core, then restore it"
            " from a backup, or move it away to start with no state"
        )
    if "full" in text:
        return f"{path}: the disk is full ({text}); free space"
    return f"{path}: cannot open the state database: {text}"


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip() and not _only_comments(s)]


def _only_comments(s: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in s.splitlines())
