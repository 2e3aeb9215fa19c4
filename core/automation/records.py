"""Procedure runs, schedule fires and rotated server keys in the core's SQLite store
(migration 5). Blocking, like the rest of the store; the async side calls it in worker threads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from core.store import Store


class RunRow(msgspec.Struct, frozen=True):
    id: int
    procedure: str
    source: str
    reason: str
    parent: int | None
    started_at: float
    finished_at: float | None
    status: str
    message: str


class ScheduleRow(msgspec.Struct, frozen=True):
    procedure: str
    fingerprint: str
    armed_at: float
    last_due: float | None


class KeyRow(msgspec.Struct, frozen=True):
    server: str
    base: str  # the key line the resource pinned when the rotation started
    active: str  # the key the agent is known to use
    next: str  # a key the agent made and may use already ("" none)
    updated_at: float


_RUN_COLUMNS = "id, procedure, source, reason, parent, started_at, finished_at, status, message"


class ProcedureRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- runs ---------------------------------------------------------------------------------
    def max_run_id(self) -> int:
        with self.store.read() as db:
            row = db.execute("SELECT MAX(id) FROM procedure_runs").fetchone()
        return int(row[0] or 0)

    def start_run(
        self, run_id: int, procedure: str, source: str, reason: str, parent: int | None
    ) -> None:
        with self.store.write() as db:
            db.execute(
                "INSERT INTO procedure_runs (id, procedure, source, reason, parent, started_at,"
                " status) VALUES (?, ?, ?, ?, ?, ?, 'running')",
                (run_id, procedure, source, reason, parent, time.time()),
            )

    def finish_run(self, run_id: int, status: str, message: str) -> None:
        with self.store.write() as db:
            db.execute(
                "UPDATE procedure_runs SET status = ?, message = ?, finished_at = ? WHERE id = ?",
                (status, message, time.time(), run_id),
            )

    def step_started(
        self, run_id: int, seq: int, stage: int, stage_name: str, execution: str
    ) -> None:
        with self.store.write() as db:
            db.execute(
                "INSERT INTO procedure_steps (run_id, seq, stage, stage_name, execution, status,"
                " started_at) VALUES (?, ?, ?, ?, ?, 'running', ?)",
                (run_id, seq, stage, stage_name, execution, time.time()),
            )

    def step_finished(self, run_id: int, seq: int, status: str, message: str) -> None:
        with self.store.write() as db:
            db.execute(
                "UPDATE procedure_steps SET status = ?, message = ?, finished_at = ?"
                " WHERE run_id = ? AND seq = ?",
                (status, message, time.time(), run_id, seq),
            )

    def add_output(self, run_id: int, lines: Sequence[tuple[int, float, str]]) -> None:
        with self.store.write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO procedure_output (run_id, seq, at, text)"
                " VALUES (?, ?, ?, ?)",
                [(run_id, seq, at, text) for seq, at, text in lines],
            )

    def close_open(self, reason: str) -> list[RunRow]:
        """Runs an earlier process left open become ``interrupted``; returns them."""
        now = time.time()
        with self.store.write() as db:
            rows = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM procedure_runs WHERE status = 'running'"
            ).fetchall()
            db.execute(
                "UPDATE procedure_runs SET status = 'interrupted', message = ?, finished_at = ?"
                " WHERE status = 'running'",
                (reason, now),
            )
            db.execute(
                "UPDATE procedure_steps SET status = 'interrupted', finished_at = ?"
                " WHERE status = 'running'",
                (now,),
            )
        return [RunRow(*r) for r in rows]

    def run(self, run_id: int, after: int = -1) -> dict[str, Any] | None:
        """The run with its steps and its output lines after ``after``."""
        with self.store.read() as db:
            row = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM procedure_runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None:
                return None
            steps = db.execute(
                "SELECT seq, stage, stage_name, execution, status, message, started_at,"
                " finished_at FROM procedure_steps WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
            output = db.execute(
                "SELECT seq, at, text FROM procedure_output WHERE run_id = ? AND seq > ?"
                " ORDER BY seq LIMIT 10000",
                (run_id, after),
            ).fetchall()
        out = msgspec.structs.asdict(RunRow(*row))
        keys = ("seq", "stage", "stage_name", "execution", "status", "message")
        out["steps"] = [
            {**dict(zip(keys, s[:6], strict=True)), "started_at": s[6], "finished_at": s[7]}
            for s in steps
        ]
        out["output"] = [{"seq": s, "at": a, "text": t} for s, a, t in output]
        return out

    def runs(self, procedure: str = "", limit: int = 20) -> list[RunRow]:
        with self.store.read() as db:
            if procedure:
                rows = db.execute(
                    f"SELECT {_RUN_COLUMNS} FROM procedure_runs WHERE procedure = ?"
                    " ORDER BY id DESC LIMIT ?",
                    (procedure, limit),
                ).fetchall()
            else:
                rows = db.execute(
                    f"SELECT {_RUN_COLUMNS} FROM procedure_runs ORDER BY id DESC LIMIT ?",
                    (limit,),
                ).fetchall()
        return [RunRow(*r) for r in rows]

    def last_runs(self) -> dict[str, RunRow]:
        with self.store.read() as db:
            rows = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM procedure_runs WHERE id IN"
                " (SELECT MAX(id) FROM procedure_runs GROUP BY procedure)"
            ).fetchall()
        return {r[1]: RunRow(*r) for r in rows}

    # -- schedules ----------------------------------------------------------------------------
    def schedules(self) -> dict[str, ScheduleRow]:
        with self.store.read() as db:
            rows = db.execute(
                "SELECT procedure, fingerprint, armed_at, last_due FROM schedules"
            ).fetchall()
        return {r[0]: ScheduleRow(*r) for r in rows}

    def arm(self, procedure: str, fingerprint: str, now: float) -> ScheduleRow:
        """The schedule's row; a new one (or one whose schedule changed) starts at ``now``."""
        with self.store.write() as db:
            row = db.execute(
                "SELECT procedure, fingerprint, armed_at, last_due FROM schedules"
                " WHERE procedure = ?",
                (procedure,),
            ).fetchone()
            if row is not None and row[1] == fingerprint:
                return ScheduleRow(*row)
            db.execute(
                "INSERT INTO schedules (procedure, fingerprint, armed_at, last_due)"
                " VALUES (?, ?, ?, NULL) ON CONFLICT (procedure) DO UPDATE SET"
                " fingerprint = excluded.fingerprint, armed_at = excluded.armed_at,"
                " last_due = NULL",
                (procedure, fingerprint, now),
            )
        return ScheduleRow(procedure, fingerprint, now, None)

    def disarm(self, keep: Sequence[str]) -> None:
        """Forget the schedules of procedures not in ``keep`` (removed, or no schedule now)."""
        with self.store.write() as db:
            names = [r[0] for r in db.execute("SELECT procedure FROM schedules")]
            for name in names:
                if name not in keep:
                    db.execute("DELETE FROM schedules WHERE procedure = ?", (name,))

    def claim(self, procedure: str, due: float, now: float, outcome: str) -> bool:
        """Record that ``due`` fired (or was missed: ``outcome``); False when it was recorded
        before (it must not fire again). One transaction with the schedule's watermark."""
        with self.store.write() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO schedule_fires (procedure, due_at, fired_at, outcome)"
                " VALUES (?, ?, ?, ?)",
                (procedure, due, now, outcome),
            )
            if cursor.rowcount == 0:
                return False
            db.execute(
                "UPDATE schedules SET last_due = MAX(COALESCE(last_due, 0), ?) WHERE procedure = ?",
                (due, procedure),
            )
        return True

    def fire_outcome(self, procedure: str, due: float, outcome: str, run_id: int | None) -> None:
        with self.store.write() as db:
            db.execute(
                "UPDATE schedule_fires SET outcome = ?, run_id = ? WHERE procedure = ?"
                " AND due_at = ?",
                (outcome, run_id, procedure, due),
            )

    def passed(self, procedure: str, last: float) -> None:
        """Times up to ``last`` are dealt with (reported missed): the watermark moves."""
        with self.store.write() as db:
            db.execute(
                "UPDATE schedules SET last_due = MAX(COALESCE(last_due, 0), ?) WHERE procedure = ?",
                (last, procedure),
            )

    def fires(self, procedure: str, limit: int = 100) -> list[tuple[float, float, str, int | None]]:
        with self.store.read() as db:
            rows = db.execute(
                "SELECT due_at, fired_at, outcome, run_id FROM schedule_fires"
                " WHERE procedure = ? ORDER BY due_at DESC LIMIT ?",
                (procedure, limit),
            ).fetchall()
        return [(float(a), float(b), str(c), d) for a, b, c, d in rows]

    # -- server keys --------------------------------------------------------------------------
    def keys(self) -> dict[str, KeyRow]:
        with self.store.read() as db:
            rows = db.execute(
                "SELECT server, base, active, next, updated_at FROM server_keys"
            ).fetchall()
        return {r[0]: KeyRow(*r) for r in rows}

    def set_key(self, server: str, base: str, active: str, next_key: str) -> None:
        with self.store.write() as db:
            db.execute(
                "INSERT INTO server_keys (server, base, active, next, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (server) DO UPDATE SET base = excluded.base,"
                " active = excluded.active, next = excluded.next,"
                " updated_at = excluded.updated_at",
                (server, base, active, next_key, time.time()),
            )

    def drop_key(self, server: str) -> None:
        with self.store.write() as db:
            db.execute("DELETE FROM server_keys WHERE server = ?", (server,))
