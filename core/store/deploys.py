"""Deploy records and stack locks in the core's SQLite store.

Blocking, like the rest of the store; the async side calls it in worker threads.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from core.exceptions import StoreError
from core.reconcile.convergence import ANY_SPEC, Record
from core.store import Store

_form_decoder = msgspec.json.Decoder(dict[str, Any])


class StackLocked(StoreError):
    """Another deploy of the stack is running."""


class OutputLine(msgspec.Struct, frozen=True):
    seq: int
    step: str
    stream: str
    at: float
    text: str


class DeployRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- runs ---------------------------------------------------------------------------------
    def start_run(
        self,
        trigger: str,
        stacks: Sequence[tuple[str, str]],
        *,
        run_id: int | None = None,
        source: str = "",
    ) -> tuple[int, dict[str, int]]:
        """A run with one pending deploy per ``(stack, server)``; returns the ids. ``run_id``
        gives the run its id (the reconciler numbers runs as it admits them); a run that exists
        already gets deploys only for stacks it has none for."""
        now = time.time()
        with self.store.write() as db:
            if run_id is None:
                run_id = _lastrowid(
                    db.execute(
                        "INSERT INTO deploy_runs (trigger, started_at, status, source)"
                        " VALUES (?, ?, 'running', ?)",
                        (trigger, now, source),
                    )
                )
            else:
                db.execute(
                    "INSERT OR IGNORE INTO deploy_runs (id, trigger, started_at, status, source)"
                    " VALUES (?, ?, ?, 'running', ?)",
                    (run_id, trigger, now, source),
                )
            have = {
                str(r[0]): int(r[1])
                for r in db.execute("SELECT stack, id FROM deploys WHERE run_id = ?", (run_id,))
            }
            ids = {}
            for stack, server in stacks:
                if stack in have:
                    ids[stack] = have[stack]
                    continue
                ids[stack] = _lastrowid(
                    db.execute(
                        "INSERT INTO deploys (run_id, stack, server, status) "
                        "VALUES (?, ?, ?, 'pending')",
                        (run_id, stack, server),
                    )
                )
        return run_id, ids

    def deploy_in_run(self, run_id: int, stack: str) -> int | None:
        with self.store.read() as db:
            row = db.execute(
                "SELECT id FROM deploys WHERE run_id = ? AND stack = ? ORDER BY id DESC LIMIT 1",
                (run_id, stack),
            ).fetchone()
        return int(row[0]) if row else None

    def max_run_id(self) -> int:
        with self.store.read() as db:
            row = db.execute("SELECT MAX(id) FROM deploy_runs").fetchone()
        return int(row[0] or 0)

    def finish_run(self, run_id: int, status: str) -> None:
        with self.store.write() as db:
            db.execute(
                "UPDATE deploy_runs SET status = ?, finished_at = ? WHERE id = ?",
                (status, time.time(), run_id),
            )

    def run(self, run_id: int) -> dict[str, Any] | None:
        with self.store.read() as db:
            row = db.execute(
                "SELECT id, trigger, started_at, finished_at, status, source FROM deploy_runs"
                " WHERE id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM deploys WHERE run_id = ? ORDER BY id", (run_id,)
                )
            ]
        keys = ("id", "trigger", "started_at", "finished_at", "status", "source")
        out = dict(zip(keys, row, strict=True))
        out["deploys"] = [self.deploy(i) for i in ids]
        return out

    # -- deploys ------------------------------------------------------------------------------
    def deploy_started(
        self, deploy_id: int, fence: int, server: str, spec: str = "", commit: str = ""
    ) -> None:
        """A deploy starts, at ``spec`` and ``commit`` (what it deploys, for convergence)."""
        with self.store.write() as db:
            db.execute(
                "UPDATE deploys SET status = 'running', started_at = ?, fence = ?, server = ?,"
                " spec = ?, commit_id = ? WHERE id = ?",
                (time.time(), fence, server, spec, commit, deploy_id),
            )

    def deploy_finished(
        self,
        deploy_id: int,
        status: str,
        reason: str,
        commit: str = "",
        *,
        spec: str = "",
        spec_form: dict[str, Any] | None = None,
        failed_step: str = "",
        tail: str = "",
        retry_delay: Callable[[int], float] | None = None,
    ) -> None:
        """Close a deploy; for a healthy one also its spec (what convergence compares with),
        for a failed one the step and the last output lines. The stack's engine state and retry
        count move with it, in the same transaction."""
        now = time.time()
        with self.store.write() as db:
            db.execute(
                "UPDATE deploys SET status = ?, reason = ?, finished_at = ?, "
                "commit_id = CASE WHEN ? = '' THEN commit_id ELSE ? END, "
                "spec = CASE WHEN ? = '' THEN spec ELSE ? END, "
                "spec_form = CASE WHEN ? = '' THEN spec_form ELSE ? END, "
                "failed_step = ?, tail = ? WHERE id = ?",
                (
                    status,
                    reason,
                    now,
                    commit,
                    commit,
                    spec,
                    spec,
                    form := (msgspec.json.encode(spec_form).decode() if spec_form else ""),
                    form,
                    failed_step,
                    tail,
                    deploy_id,
                ),
            )
            row = db.execute("SELECT stack FROM deploys WHERE id = ?", (deploy_id,)).fetchone()
            if row is None:
                return
            stack = str(row[0])
            if status == "healthy":
                db.execute(
                    "INSERT INTO stack_state (stack, engine, engine_detail, engine_at, failures,"
                    " retry_at) VALUES (?, 'healthy', '', ?, 0, NULL) ON CONFLICT (stack) DO"
                    " UPDATE SET engine = 'healthy', engine_detail = '', engine_at = ?,"
                    " failures = 0, retry_at = NULL",
                    (stack, now, now),
                )
            elif status == "failed":
                row = db.execute(
                    "SELECT failures FROM stack_state WHERE stack = ?", (stack,)
                ).fetchone()
                failures = (int(row[0]) if row else 0) + 1
                retry_at = now + (retry_delay(failures) if retry_delay else 0.0)
                db.execute(
                    "INSERT INTO stack_state (stack, failures, retry_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (stack) DO UPDATE SET failures = ?, retry_at = ?",
                    (stack, failures, retry_at, failures, retry_at),
                )

    def failures(self, stack: str) -> int:
        with self.store.read() as db:
            row = db.execute(
                "SELECT failures FROM stack_state WHERE stack = ?", (stack,)
            ).fetchone()
        return int(row[0]) if row else 0

    def set_engine(self, stack: str, engine: str, detail: str = "") -> None:
        """What the engine reports for ``stack``: healthy, unhealthy, missing, unknown."""
        now = time.time()
        with self.store.write() as db:
            db.execute(
                "INSERT INTO stack_state (stack, engine, engine_detail, engine_at) VALUES"
                " (?, ?, ?, ?) ON CONFLICT (stack) DO UPDATE SET engine = excluded.engine,"
                " engine_detail = excluded.engine_detail, engine_at = excluded.engine_at",
                (stack, engine, detail, now),
            )

    def records(self) -> dict[str, Record]:
        """Every stack's convergence record: its last deploy, its last healthy deploy's spec and
        commit, and its engine and retry state. Three queries, whatever the number of stacks."""
        with self.store.read() as db:
            last = db.execute(
                "SELECT d.stack, d.status, d.reason, COALESCE(d.finished_at, 0), d.run_id, d.spec,"
                " d.commit_id FROM deploys d JOIN (SELECT stack, MAX(id) AS id FROM deploys"
                " GROUP BY stack) m ON d.id = m.id"
            ).fetchall()
            ok = db.execute(
                "SELECT d.stack, d.spec, d.spec_form, d.commit_id FROM deploys d JOIN"
                " (SELECT stack, MAX(id) AS id FROM deploys WHERE status = 'healthy'"
                "  GROUP BY stack) m ON d.id = m.id"
            ).fetchall()
            state = db.execute(
                "SELECT stack, engine, engine_detail, failures, COALESCE(retry_at, 0)"
                " FROM stack_state"
            ).fetchall()
        fields: dict[str, dict[str, Any]] = {}
        for stack, status, reason, finished, run, spec, commit in last:
            fields.setdefault(stack, {}).update(
                status=status, reason=reason, finished_at=float(finished), run=int(run)
            )
            if status in ("pending", "running"):
                fields[stack].update(run_spec=spec, run_commit=commit)
        for stack, spec, form, commit in ok:
            fields.setdefault(stack, {}).update(
                ok_spec=spec or ANY_SPEC,  # healthy before specs were kept: taken as current
                ok_form=_form_decoder.decode(form) if form else None,
                ok_commit=commit,
            )
        for stack, engine, detail, failures, retry_at in state:
            fields.setdefault(stack, {}).update(
                engine=engine,
                engine_detail=detail,
                failures=int(failures),
                retry_at=float(retry_at),
            )
        return {stack: Record(**f) for stack, f in fields.items()}

    def close_open(self, reason: str) -> list[tuple[int, int, str, str]]:
        """Close what an earlier process left open: its runs and their pending or running
        deploys become ``interrupted`` (with ``reason``), its open intents too. Returns the
        deploys closed as ``(deploy id, run id, stack, status before)``."""
        now = time.time()
        with self.store.write() as db:
            rows = db.execute(
                "SELECT id, run_id, stack, status FROM deploys WHERE status IN"
                " ('pending', 'running') ORDER BY id"
            ).fetchall()
            db.execute(
                "UPDATE deploys SET status = 'interrupted', reason = ?, finished_at = ?"
                " WHERE status IN ('pending', 'running')",
                (reason, now),
            )
            db.execute(
                "UPDATE deploy_runs SET status = 'interrupted', finished_at = ?"
                " WHERE status = 'running'",
                (now,),
            )
            db.execute("UPDATE intents SET status = 'interrupted' WHERE status = 'open'")
            db.execute("DELETE FROM stack_locks")
        return [(int(a), int(b), str(c), str(d)) for a, b, c, d in rows]

    def set_commit(self, deploy_id: int, commit: str) -> None:
        with self.store.write() as db:
            db.execute("UPDATE deploys SET commit_id = ? WHERE id = ?", (commit, deploy_id))

    def deploy(self, deploy_id: int) -> dict[str, Any] | None:
        with self.store.read() as db:
            row = db.execute(
                "SELECT id, run_id, stack, server, commit_id, status, reason, fence, started_at,"
                " finished_at, failed_step, tail FROM deploys WHERE id = ?",
                (deploy_id,),
            ).fetchone()
            if row is None:
                return None
            steps = db.execute(
                "SELECT step, status, message, started_at, finished_at FROM deploy_steps "
                "WHERE deploy_id = ? ORDER BY started_at, step",
                (deploy_id,),
            ).fetchall()
        keys = (
            "id",
            "run_id",
            "stack",
            "server",
            "commit",
            "status",
            "reason",
            "fence",
            "started_at",
            "finished_at",
            "failed_step",
            "tail",
        )
        out = dict(zip(keys, row, strict=True))
        out["steps"] = [
            dict(zip(("step", "status", "message", "started_at", "finished_at"), s, strict=True))
            for s in steps
        ]
        return out

    def finished_stats(self) -> tuple[dict[str, int], list[float]]:
        """Finished deploys by status, and the durations of those that started."""
        with self.store.read() as db:
            counts = dict(
                db.execute(
                    "SELECT status, COUNT(*) FROM deploys"
                    " WHERE status NOT IN ('pending', 'running') GROUP BY status"
                ).fetchall()
            )
            seconds = [
                float(r[0])
                for r in db.execute(
                    "SELECT finished_at - started_at FROM deploys"
                    " WHERE started_at IS NOT NULL AND finished_at IS NOT NULL"
                )
            ]
        return {str(k): int(v) for k, v in counts.items()}, seconds

    def last_deploys(self) -> dict[str, dict[str, Any]]:
        """Each stack's newest deploy record (without steps)."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT d.id, d.stack, d.status, d.commit_id, d.reason, d.finished_at,"
                " d.failed_step, d.tail, d.run_id FROM deploys d"
                " JOIN (SELECT stack, MAX(id) AS id FROM deploys GROUP BY stack) m ON d.id = m.id"
            ).fetchall()
        keys = (
            "id",
            "stack",
            "status",
            "commit",
            "reason",
            "finished_at",
            "failed_step",
            "tail",
            "run",
        )
        return {r[1]: dict(zip(keys, r, strict=True)) for r in rows}

    def history(self, stack: str, limit: int = 20) -> list[dict[str, Any]]:
        """A stack's newest deploys first (without steps or output), at most ``limit``."""
        with self.store.read() as db:
            rows = db.execute(
                "SELECT d.id, d.run_id, d.status, d.commit_id, d.reason, d.started_at,"
                " d.finished_at, d.failed_step, r.source, r.trigger FROM deploys d"
                " JOIN deploy_runs r ON r.id = d.run_id WHERE d.stack = ?"
                " ORDER BY d.id DESC LIMIT ?",
                (stack, limit),
            ).fetchall()
        keys = (
            "id",
            "run",
            "status",
            "commit",
            "reason",
            "started_at",
            "finished_at",
            "failed_step",
            "source",
            "trigger",
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def ever_healthy(self) -> set[str]:
        """The stacks that have been deployed healthy at least once."""
        with self.store.read() as db:
            rows = db.execute("SELECT DISTINCT stack FROM deploys WHERE status = 'healthy'")
            return {str(r[0]) for r in rows.fetchall()}

    def last_finished(self, stack: str) -> tuple[str, str, str] | None:
        """The newest deploy of ``stack`` that ended: ``(status, spec, commit)``."""
        with self.store.read() as db:
            row = db.execute(
                "SELECT status, COALESCE(spec, ''), COALESCE(commit_id, '') FROM deploys"
                " WHERE stack = ? AND status NOT IN ('pending', 'running') ORDER BY id DESC"
                " LIMIT 1",
                (stack,),
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    def last_deploy_of(self, stack: str) -> int | None:
        with self.store.read() as db:
            row = db.execute(
                "SELECT id FROM deploys WHERE stack = ? ORDER BY id DESC LIMIT 1", (stack,)
            ).fetchone()
        return int(row[0]) if row else None

    # -- steps and output ---------------------------------------------------------------------
    def step_started(self, deploy_id: int, step: str) -> None:
        with self.store.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO deploy_steps (deploy_id, step, status, started_at) "
                "VALUES (?, ?, 'running', ?)",
                (deploy_id, step, time.time()),
            )

    def step_finished(self, deploy_id: int, step: str, ok: bool, message: str) -> None:
        with self.store.write() as db:
            db.execute(
                "UPDATE deploy_steps SET status = ?, message = ?, finished_at = ? "
                "WHERE deploy_id = ? AND step = ?",
                ("ok" if ok else "failed", message, time.time(), deploy_id, step),
            )

    def add_output(self, deploy_id: int, lines: Sequence[OutputLine]) -> None:
        if not lines:
            return
        with self.store.write() as db:
            db.executemany(
                "INSERT INTO deploy_output (deploy_id, seq, step, stream, at, text) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(deploy_id, x.seq, x.step, x.stream, x.at, x.text) for x in lines],
            )

    def output(self, deploy_id: int, after: int = -1, limit: int = 10_000) -> list[OutputLine]:
        with self.store.read() as db:
            rows = db.execute(
                "SELECT seq, step, stream, at, text FROM deploy_output "
                "WHERE deploy_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (deploy_id, after, limit),
            ).fetchall()
        return [OutputLine(*r) for r in rows]

    # -- locks --------------------------------------------------------------------------------
    def lock(self, stack: str, holder: str, deploy_id: int) -> int:
        """Take the stack's lock for ``holder``; return the new fencing token.

        A lock held by this same holder (this core process) means a deploy is running:
        ``StackLocked``. A lock left by another holder (a core that has since stopped) is taken
        over with a higher token, which the periphery's fence turns against the old one.
        """
        with self.store.write() as db:
            row = db.execute(
                "SELECT holder, deploy_id FROM stack_locks WHERE stack = ?", (stack,)
            ).fetchone()
            if row is not None and row[0] == holder:
                raise StackLocked(f"stack {stack!r} is being deployed (deploy {row[1]})")
            token = int(db.execute("SELECT value FROM meta WHERE key = 'fence'").fetchone()[0]) + 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'fence'", (str(token),))
            db.execute(
                "INSERT OR REPLACE INTO stack_locks (stack, token, holder, deploy_id, acquired_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (stack, token, holder, deploy_id, time.time()),
            )
        return token

    def raise_fence(self, seen: int) -> bool:
        """Make the next fencing token larger than ``seen`` (the highest an agent has seen: a
        lost or restored database would otherwise hand out tokens the agent refuses as stale).
        True when the counter was behind and moved."""
        with self.store.write() as db:
            current = int(db.execute("SELECT value FROM meta WHERE key = 'fence'").fetchone()[0])
            if seen > current:
                db.execute("UPDATE meta SET value = ? WHERE key = 'fence'", (str(seen),))
                return True
        return False

    def unlock(self, stack: str, token: int) -> None:
        with self.store.write() as db:
            db.execute("DELETE FROM stack_locks WHERE stack = ? AND token = ?", (stack, token))


def _lastrowid(cursor: sqlite3.Cursor) -> int:
    rowid = cursor.lastrowid
    assert rowid is not None
    return int(rowid)
