"""Schedules on real core processes: a run fires within a second of its time, a time never
fires twice (across a kill -9 and restart), and the times that passed while the core was down
are reported (``schedule.missed``), not run late. Komodo's executor (bin/core/src/schedule.rs,
``spawn_schedule_executor``) checks each second and fires what is due; it computes the next
time from "now" when it starts, so it skips what passed while down: here that is reported."""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path

import anyio
import msgspec
import pytest

from core.client import CoreClient
from tests.support.processes import CoreProcess, make_key

pytestmark = pytest.mark.anyio

RESOURCES = """
[[procedure]]
name = "tick"
[procedure.config]
schedule_format = "Cron"
schedule = "*/2 * * * * *"
schedule_timezone = "UTC"
[[procedure.config.stage]]
name = "Nap"
executions = [{ execution.type = "Sleep", execution.params.duration_ms = 20 }]
"""


def fires(db: Path) -> list[tuple[float, float, str, int | None]]:
    with sqlite3.connect(db) as conn:
        return [
            (float(a), float(b), str(c), d)
            for a, b, c, d in conn.execute(
                "SELECT due_at, fired_at, outcome, run_id FROM schedule_fires ORDER BY due_at"
            )
        ]


def events(db: Path, kind: str) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        return [
            msgspec.msgpack.decode(data)
            for (data,) in conn.execute(
                "SELECT data FROM events WHERE kind = ? ORDER BY id", (kind,)
            )
        ]


async def test_fires_on_time_once_and_reports_what_it_missed(tmp_path: Path) -> None:
    token = secrets.token_hex(16)
    core = CoreProcess(
        tmp_path / "core", make_key(tmp_path / "core.key"), token, reconcile="manual"
    )
    core.resources.write_text(RESOURCES)
    db = core.workdir / "data" / "stackward.db"
    core.start_and_wait()
    try:
        async with CoreClient(core.url, token, timeout=30) as client:
            await client.sync("local")
        await anyio.sleep(5.5)
        before = [f for f in fires(db) if f[2] == "started"]
        assert len(before) >= 2, before
        for due, fired, _, run_id in before:
            assert 0 <= fired - due < 1.0, (due, fired)  # within a second of its time
            assert run_id is not None
        core.kill()  # kill -9, right after a fire
        killed_at = time.time()
        await anyio.sleep(4.5)  # two or three times pass while it is down
        core.start_and_wait()
        await anyio.sleep(3.0)
    finally:
        core.stop()
    after = fires(db)
    dues = [f[0] for f in after]
    assert len(dues) == len(set(dues))
    with sqlite3.connect(db) as conn:
        runs = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM procedure_runs WHERE source = 'schedule'"
        ).fetchone()
    started = [f for f in after if f[2] == "started"]
    assert runs[0] == runs[1] == len(started)  # one run per fired time, none twice
    for due, fired, _, _ in started:
        assert fired - due < 1.0, "nothing ran late"
    down = [d for d in dues if killed_at < d < killed_at + 4.0]
    assert down == [], "a time that passed while the core was down did not run"
    missed = events(db, "schedule.missed")
    assert missed, "the times missed were reported"
    report = missed[-1]
    assert report["procedure"] == "tick" and int(report["count"]) >= 1  # type: ignore[call-overload]
    assert killed_at - 2.0 < float(report["first"]) <= float(report["last"])  # type: ignore[arg-type]
    assert any(f[0] > killed_at + 4.0 for f in started), "it fires again after the restart"
