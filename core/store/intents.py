"""Intents and branch heads in the core's SQLite store (blocking; called from worker threads).

An intent is a trigger (an API deploy, an apply, a webhook, a poll, a drift redeploy, a secret's
new version, the core's start, a reconcile) for a set of stacks, recorded before it is answered,
with the run that carries each stack. A head is the commit a branch was last seen at, and who saw
it (a verified push, a poll, an apply, a deploy).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from core.store import Store

_decoder = msgspec.json.Decoder(dict[str, Any])
_list_decoder = msgspec.json.Decoder(list[str])


class IntentRow(msgspec.Struct, frozen=True):
    id: int
    created_at: float
    source: str
    reason: str
    stacks: list[str]
    pins: dict[str, str]
    runs: dict[str, int]
    status: str


class IntentLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def max_id(self) -> int:
        with self.store.read() as db:
            row = db.execute("SELECT MAX(id) FROM intents").fetchone()
        return int(row[0] or 0)

    def record(
        self,
        intent_id: int,
        source: str,
        reason: str,
        stacks: Sequence[str],
        pins: Mapping[str, str],
        runs: Mapping[str, int],
        new_runs: Iterable[tuple[int, str, str, Sequence[tuple[str, str]]]],
    ) -> None:
        """The intent, and in the same transaction the runs that carry it: for each
        ``(run id, trigger, source, [(stack, server)])`` the run and a pending deploy per stack
        (where it has none yet)."""
        now = time.time()
        with self.store.write() as db:
            for run_id, trigger, run_source, stacks_servers in new_runs:
                db.execute(
                    "INSERT OR IGNORE INTO deploy_runs (id, trigger, started_at, status, source)"
                    " VALUES (?, ?, ?, 'running', ?)",
                    (run_id, trigger, now, run_source),
                )
                have = {
                    str(r[0])
                    for r in db.execute("SELECT stack FROM deploys WHERE run_id = ?", (run_id,))
                }
                db.executemany(
                    "INSERT INTO deploys (run_id, stack, server, status) VALUES (?, ?, ?,"
                    " 'pending')",
                    [(run_id, s, server) for s, server in stacks_servers if s not in have],
                )
            db.execute(
                "INSERT INTO intents (id, created_at, source, reason, stacks, pins, runs, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'open')",
                (
                    intent_id,
                    now,
                    source,
                    reason,
                    msgspec.json.encode(list(stacks)).decode(),
                    msgspec.json.encode(dict(pins)).decode(),
                    msgspec.json.encode(dict(runs)).decode(),
                ),
            )

    def finish(self, intent_ids: Iterable[int], status: str = "done") -> None:
        ids = sorted(set(intent_ids))
        if not ids:
            return
        with self.store.write() as db:
            db.executemany(
                "UPDATE intents SET status = ? WHERE id = ? AND status = 'open'",
                [(status, i) for i in ids],
            )

    def get(self, intent_id: int) -> IntentRow | None:
        with self.store.read() as db:
            row = db.execute(
                "SELECT id, created_at, source, reason, stacks, pins, runs, status FROM intents"
                " WHERE id = ?",
                (intent_id,),
            ).fetchone()
        if row is None:
            return None
        return IntentRow(
            id=int(row[0]),
            created_at=float(row[1]),
            source=str(row[2]),
            reason=str(row[3]),
            stacks=_list_decoder.decode(row[4]),
            pins={str(k): str(v) for k, v in _decoder.decode(row[5]).items()},
            runs={str(k): int(v) for k, v in _decoder.decode(row[6]).items()},
            status=str(row[7]),
        )

    def open_count(self) -> int:
        with self.store.read() as db:
            row = db.execute("SELECT COUNT(*) FROM intents WHERE status = 'open'").fetchone()
        return int(row[0])


class Heads:
    """The commit each ``(url, branch)`` was last seen at."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def set(self, url: str, branch: str, commit: str, source: str) -> None:
        with self.store.write() as db:
            db.execute(
                "INSERT INTO heads (url, branch, commit_id, at, source) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (url, branch) DO UPDATE SET commit_id = excluded.commit_id,"
                " at = excluded.at, source = excluded.source",
                (url, branch, commit, time.time(), source),
            )

    def get(self, url: str, branch: str) -> str:
        with self.store.read() as db:
            row = db.execute(
                "SELECT commit_id FROM heads WHERE url = ? AND branch = ?", (url, branch)
            ).fetchone()
        return str(row[0]) if row else ""

    def all(self) -> dict[tuple[str, str], str]:
        with self.store.read() as db:
            rows = db.execute("SELECT url, branch, commit_id FROM heads").fetchall()
        return {(str(u), str(b)): str(c) for u, b, c in rows}
