"""Procedures on a real core in-process (loopback HTTP, a real SQLite store), no Docker: the
runner, its records and events, the API and the procedure webhook. Komodo's behaviour matched:
bin/core/src/helpers/procedure.rs (``execute_procedure``: stages in order, a failed execution
stops the procedure with the reason; ``execute_execution``: the self-referential guard, Sleep),
bin/core/src/api/listener/router.rs and resources.rs (``/procedure/{id}/{branch}``,
``handle_procedure_webhook``: ``__ANY__``, ``webhook_enabled``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from core.config import load_config
from tests.support.core_server import start_core
from tests.support.events import watch

pytestmark = pytest.mark.anyio

TOKEN = "test-token-0123456789abcdef"
HOOK_SECRET = "hook-secret-0123456789"

RESOURCES = """
[[server]]
name = "nowhere"
[server.config]
address = "ws://127.0.0.1:9/ws"

[[stack]]
name = "web"
[stack.config]
server = "nowhere"
file_contents = "services: {}"

[[procedure]]
name = "nightly"
[[procedure.config.stage]]
name = "Wait"
executions = [
  { execution.type = "Sleep", execution.params.duration_ms = 200 },
  { execution.type = "Sleep", execution.params.duration_ms = 200 },
  { execution.type = "RunBuild", execution.params.build = "app" },
]
[[procedure.config.stage]]
name = "Off"
enabled = false
executions = [{ execution.type = "DeployStack", execution.params.stack = "web" }]
[[procedure.config.stage]]
name = "Back up"
executions = [{ execution.type = "BackupCoreDatabase", execution.params = {} }]

[[procedure]]
name = "broken"
[[procedure.config.stage]]
name = "One"
executions = [
  { execution.type = "DeployStack", execution.params.stack = "web" },
  { execution.type = "Sleep", execution.params.duration_ms = 300 },
]
[[procedure.config.stage]]
name = "Never"
executions = [{ execution.type = "Sleep", execution.params.duration_ms = 1 }]

[[procedure]]
name = "parent"
[[procedure.config.stage]]
name = "Children"
executions = [
  { execution.type = "RunProcedure", execution.params.procedure = "nightly" },
]

[[procedure]]
name = "selfish"
[[procedure.config.stage]]
name = "Me"
executions = [{ execution.type = "RunProcedure", execution.params.procedure = "selfish" }]

[[procedure]]
name = "hooked"
[procedure.config]
webhook_secret = "HOOK_SECRET"
[[procedure.config.stage]]
name = "Nap"
executions = [{ execution.type = "Sleep", execution.params.duration_ms = 10 }]

[[procedure]]
name = "deaf"
[procedure.config]
webhook_enabled = false
[[procedure.config.stage]]
name = "Nap"
executions = [{ execution.type = "Sleep", execution.params.duration_ms = 10 }]
""".replace("HOOK_SECRET", HOOK_SECRET)


@dataclass
class Core:
    url: str
    dir: Path
    session: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, token: str | None = TOKEN, **kw: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        async with self.session.request(method, self.url + path, headers=headers, **kw) as r:
            return r.status, await r.json()

    async def wait(self, run_id: int, within: float = 20.0) -> dict[str, Any]:
        with anyio.fail_after(within):
            while True:
                status, run = await self.call("GET", f"/api/procedure-runs/{run_id}")
                assert status == 200, run
                if run["status"] != "running":
                    return dict(run)
                await anyio.sleep(0.05)


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    (tmp_path / "resources.toml").write_text(RESOURCES)
    (tmp_path / "core.toml").write_text(
        'listen = "127.0.0.1:0"\ndata_dir = "data"\nreconcile = "manual"\nmax_backups = 2\n'
        f'api_tokens = ["{TOKEN}"]\nresources = ["resources.toml"]\n'
        f'webhook_secret = "core-secret-0123456789"\n'
    )
    async with anyio.create_task_group() as tg:
        port, _ = await start_core(tg, load_config(tmp_path / "core.toml"))
        async with aiohttp.ClientSession() as session:
            c = Core(f"http://127.0.0.1:{port}", tmp_path, session)
            status, plan = await c.call("POST", "/api/syncs/local/plan")
            assert status == 201, plan
            status, _ = await c.call("POST", "/api/syncs/local/apply", json={"plan_id": plan["id"]})
            assert status == 200
            yield c
        tg.cancel_scope.cancel()


async def test_stages_run_in_order_executions_at_once(core: Core) -> None:
    started = time.monotonic()
    status, body = await core.call("POST", "/api/procedures/nightly/run")
    assert status == 202, body
    run = await core.wait(body["run"])
    took = time.monotonic() - started
    assert run["status"] == "succeeded", run
    steps = [(s["stage_name"], s["execution"], s["status"]) for s in run["steps"]]
    assert (
        steps[:3]
        == [
            ("Wait", "Sleep", "ok"),
            ("Wait", "Sleep", "ok"),
            ("Wait", "RunBuild", "skipped"),  # read past, with a warning naming it
        ]
        or sorted(steps[:3])
        == sorted(
            [("Wait", "Sleep", "ok"), ("Wait", "Sleep", "ok"), ("Wait", "RunBuild", "skipped")]
        )
    )
    assert steps[3] == ("Back up", "BackupCoreDatabase", "ok")
    assert not any(s[0] == "Off" for s in steps)  # a disabled stage is passed over
    assert took < 2.0, "the two sleeps of a stage run at once (0.2 s, not 0.4 s)"
    text = "\n".join(line["text"] for line in run["output"])
    assert "WARNING: RunBuild is read past: stackward builds nothing" in text
    assert "Executing stage: 'Wait'" in text and "Finished stage 'Back up'" in text
    backups = sorted((core.dir / "data" / "backups").glob("stackward-*.sqlite3"))
    assert len(backups) == 1
    with sqlite3.connect(backups[0]) as db:  # a whole, consistent database
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM resources").fetchone()[0] >= 7


async def test_a_failed_execution_stops_the_procedure_with_its_reason(core: Core) -> None:
    status, body = await core.call("POST", "/api/procedures/broken/run")
    assert status == 202
    run = await core.wait(body["run"])
    assert run["status"] == "failed"
    assert run["message"].startswith(
        "stage 'One' failed: deploys are off: the core has no private_key"
    )
    by_exec = {s["execution"]: s for s in run["steps"]}
    assert by_exec["DeployStack web"]["status"] == "failed"
    assert by_exec["Sleep"]["status"] == "ok"  # its sibling ran to its end (join_all)
    assert "Never" not in {s["stage_name"] for s in run["steps"]}


async def test_one_run_at_a_time_and_nested_procedures(core: Core) -> None:
    status, first = await core.call("POST", "/api/procedures/nightly/run")
    assert status == 202
    status, second = await core.call("POST", "/api/procedures/nightly/run")
    assert status == 409 and second["error"]["code"] == "procedure_running"
    await core.wait(first["run"])
    status, body = await core.call("POST", "/api/procedures/parent/run")
    run = await core.wait(body["run"])
    assert run["status"] == "succeeded", run
    status, runs = await core.call("GET", "/api/procedures/nightly/runs")
    child = runs["runs"][0]
    assert child["parent"] == body["run"] and child["source"] == "procedure"
    status, body = await core.call("POST", "/api/procedures/selfish/run")
    run = await core.wait(body["run"])
    assert run["status"] == "failed" and "Self referential procedure detected" in run["message"]
    status, body = await core.call("POST", "/api/procedures/nosuch/run")
    assert status == 404


async def test_events_tell_the_run_like_a_deploy(core: Core) -> None:
    async with watch(core.url, TOKEN, "kind=procedure") as seen:
        status, body = await core.call("POST", "/api/procedures/broken/run")
        await seen.wait(lambda e: e["kind"] == "procedure.finished", what="finished")
    mine = [e for e in seen.events if e["data"].get("run") == body["run"]]
    kinds = [e["kind"] for e in mine]
    assert kinds[0] == "procedure.started" and kinds[-1] == "procedure.finished"
    assert {"procedure.stage", "procedure.step", "procedure.output"} <= set(kinds)
    assert all(e["resource"] == "procedure:broken" for e in mine)
    failed = [
        e["data"] for e in mine if e["kind"] == "procedure.step" and e["data"]["state"] == "failed"
    ]
    assert [f["execution"] for f in failed] == ["DeployStack web"]
    assert mine[-1]["data"]["status"] == "failed"


def _github(secret: str, body: bytes) -> dict[str, str]:
    return {
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256="
        + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }


async def test_the_procedure_webhook_path(core: Core) -> None:
    push = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()
    status, body = await core.call(
        "POST",
        "/listener/github/procedure/hooked/main",
        token=None,
        data=push,
        headers=_github(HOOK_SECRET, push),
    )
    assert status == 202, body
    status, body = await core.call(
        "POST",
        "/listener/github/procedure/hooked/dev",
        token=None,
        data=push,
        headers=_github(HOOK_SECRET, push),
    )
    assert status == 202 and "ignored" in body  # a push to another branch
    status, body = await core.call(
        "POST",
        "/listener/github/procedure/hooked/__ANY__",
        token=None,
        data=push,
        headers=_github("core-secret-0123456789", push),  # the procedure's own secret rules
    )
    assert status == 401
    status, body = await core.call(
        "POST",
        "/listener/github/procedure/deaf/__ANY__",
        token=None,
        data=push,
        headers=_github("core-secret-0123456789", push),
    )
    assert status == 202 and "webhook_enabled" in body["ignored"]
    with anyio.fail_after(10):
        while True:
            status, runs = await core.call("GET", "/api/procedures/hooked/runs")
            if runs["runs"] and runs["runs"][0]["status"] == "succeeded":
                break
            await anyio.sleep(0.05)
    assert [r["source"] for r in runs["runs"]] == ["webhook"]
    status, runs = await core.call("GET", "/api/procedures/deaf/runs")
    assert runs["runs"] == []


async def test_a_refused_closing_write_is_retried_until_it_lands(core: Core) -> None:
    # A write the database refuses (as a full disk does: SQLite's own error, from a trigger
    # here) must not leave the step or the run `running` for good, nor close them wrongly:
    # the runner retries the closing writes (core/store/durable.py) until they land.
    db = sqlite3.connect(core.dir / "data" / "stackward.db", timeout=10)
    with db:
        db.execute("CREATE TABLE refuse (x)")
        db.execute("INSERT INTO refuse VALUES (1)")
        for table in ("procedure_steps", "procedure_runs"):
            db.execute(
                f"CREATE TRIGGER refuse_{table} BEFORE UPDATE ON {table}"
                " WHEN EXISTS (SELECT 1 FROM refuse)"
                " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
    status, body = await core.call("POST", "/api/procedures/hooked/run")
    assert status == 202, body
    await anyio.sleep(1.5)  # the Sleep of 10 ms is long over; its closing write was refused
    status, run = await core.call("GET", f"/api/procedure-runs/{body['run']}")
    assert (run["status"], [s["status"] for s in run["steps"]]) == ("running", ["running"])
    with db:
        db.execute("DELETE FROM refuse")
    run = await core.wait(body["run"], within=15)
    db.close()
    assert run["status"] == "succeeded", run
    assert [(s["execution"], s["status"]) for s in run["steps"]] == [("Sleep", "ok")]
