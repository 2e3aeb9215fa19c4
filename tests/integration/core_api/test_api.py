"""The core's HTTP API over real loopback HTTP, with a real SQLite store in a temp dir."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from core.config import load_config
from tests.support.core_server import start_core

pytestmark = pytest.mark.anyio

TOKEN = "test-token-0123456789abcdef"
CORE_SECRET = "core-held-secret-value-42"
VAR_SECRET = "variable-secret-value-17"

RESOURCES = f"""
tiers = ["infra", "app"]

[[server]]
name = "h1"
[server.config]
address = "wss://h1:8120"

[[variable]]
name = "DB_PASSWORD"
value = "{VAR_SECRET}"
is_secret = true

[[stack]]
name = "proxy"
deploy = true
tier = "infra"
[stack.config]
server = "h1"
run_directory = "stacks/proxy"

[[stack]]
name = "web"
deploy = true
tier = "app"
after = ["proxy"]
[stack.config]
server = "h1"
run_directory = "stacks/web"
environment = \"\"\"
PASSWORD=[[DB_PASSWORD]]
API_KEY=[[API_KEY]]
\"\"\"
"""


@dataclass
class Core:
    url: str
    dir: Path
    resources: Path
    session: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, token: str | None = TOKEN, **kw: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers |= kw.pop("headers", {})
        async with self.session.request(method, self.url + path, headers=headers, **kw) as r:
            return r.status, await r.json()


async def _start(tmp_path: Path, resources: str) -> AsyncIterator[Core]:
    res = tmp_path / "resources.toml"
    res.write_text(resources)
    cfg = tmp_path / "core.toml"
    cfg.write_text(
        'listen = "127.0.0.1:0"\ndata_dir = "data"\n'
        f'api_tokens = ["{TOKEN}"]\nresources = ["resources.toml"]\nmax_body_bytes = 4096\n'
        f'[secrets]\nAPI_KEY = "{CORE_SECRET}"\n'
    )
    async with anyio.create_task_group() as tg:
        port, _ = await start_core(tg, load_config(cfg))
        async with aiohttp.ClientSession() as session:
            yield Core(f"http://127.0.0.1:{port}", tmp_path, res, session)
        tg.cancel_scope.cancel()


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async for c in _start(tmp_path, RESOURCES):
        yield c


async def test_healthz_needs_no_token(core: Core) -> None:
    status, body = await core.call("GET", "/healthz", token=None)
    assert (status, body) == (200, {"status": "ok"})


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789abcdef", TOKEN + "x"])
async def test_api_needs_the_bearer_token(core: Core, token: str | None) -> None:
    status, body = await core.call("GET", "/api/resources", token=token)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert "Bearer" in body["error"]["message"]


async def test_plan_apply_replan_cycle(core: Core) -> None:
    status, plan = await core.call("POST", "/api/syncs/local/plan")
    assert status == 201, plan
    assert plan["counts"] == {"create": 4, "update": 0, "delete": 0, "deploy": 2}
    assert [d["stack"] for d in plan["deploys"]] == ["proxy", "web"]
    assert plan["deploy_waves"] == [["proxy"], ["web"]]
    status, again = await core.call("GET", f"/api/plans/{plan['id']}")
    assert status == 200 and again["id"] == plan["id"]

    status, result = await core.call("POST", "/api/syncs/local/apply", json={"plan_id": plan["id"]})
    assert status == 200, result
    assert result["revision"] == 1

    status, listing = await core.call("GET", "/api/resources?kind=stack")
    assert status == 200
    assert sorted(r["name"] for r in listing["resources"]) == ["proxy", "web"]
    assert listing["revision"] == 1

    status, again = await core.call("POST", "/api/syncs/local/plan")
    assert status == 201
    # Nothing changed in the files; the stacks were never deployed (this core has no key), and
    # a plan lists what is not converged, with why.
    assert again["changes"] == []
    assert {d["stack"]: d["reasons"] for d in again["deploys"]} == {
        "proxy": ["never deployed"],
        "web": ["never deployed"],
    }

    # Applying the first plan again is refused: the state moved.
    status, stale = await core.call("POST", "/api/syncs/local/apply", json={"plan_id": plan["id"]})
    assert status == 409 and stale["error"]["code"] == "plan_stale"


async def test_changed_file_gives_update_with_field_diff(core: Core) -> None:
    _, plan = await core.call("POST", "/api/syncs/local/plan")
    await core.call("POST", "/api/syncs/local/apply", json={"plan_id": plan["id"]})
    core.resources.write_text(RESOURCES.replace('"stacks/proxy"', '"stacks/edge"'))
    _, plan2 = await core.call("POST", "/api/syncs/local/plan")
    [change] = plan2["changes"]
    assert change["action"] == "update" and change["name"] == "proxy"
    assert change["fields"] == [
        {"path": "config.run_directory", "old": "stacks/proxy", "new": "stacks/edge"}
    ]
    # No deploy ever ran here (no key): both are listed as never deployed; what a change to a
    # deployed stack gives is tested where stacks deploy (tests/integration/deploys).
    assert {d["stack"]: d["reasons"] for d in plan2["deploys"]} == {
        "proxy": ["never deployed"],
        "web": ["never deployed"],
    }


async def test_secrets_never_leave_the_core(core: Core) -> None:
    _, plan = await core.call("POST", "/api/syncs/local/plan")
    _, result = await core.call("POST", "/api/syncs/local/apply", json={"plan_id": plan["id"]})
    _, listing = await core.call("GET", "/api/resources")
    for blob in (str(plan), str(result), str(listing)):
        assert VAR_SECRET not in blob and CORE_SECRET not in blob
    assert "***" in str(listing)
    for f in (core.dir / "data").iterdir():
        data = f.read_bytes()
        assert VAR_SECRET.encode() not in data and CORE_SECRET.encode() not in data, f


async def test_invalid_resources_give_422_with_file_line_findings(core: Core) -> None:
    core.resources.write_text(RESOURCES.replace('after = ["proxy"]', 'after = ["nope"]'))
    status, body = await core.call("POST", "/api/syncs/local/plan")
    assert status == 422
    assert body["error"]["code"] == "invalid_resources"
    [finding] = body["error"]["findings"]
    line = next(
        n for n, text in enumerate(core.resources.read_text().splitlines(), 1) if "nope" in text
    )
    assert finding.startswith(f"{core.resources}:{line}: error:")


async def test_unknown_variable_in_a_plan_is_an_error(core: Core) -> None:
    core.resources.write_text(RESOURCES.replace("[[API_KEY]]", "[[NOT_DEFINED]]"))
    status, body = await core.call("POST", "/api/syncs/local/plan")
    assert status == 422
    assert any("[[NOT_DEFINED]]" in f for f in body["error"]["findings"])


async def test_errors_have_one_shape(core: Core) -> None:
    status, body = await core.call("GET", "/api/plans/doesnotexist")
    assert status == 404 and body["error"]["code"] == "plan_not_found"
    status, body = await core.call("POST", "/api/syncs/nosuch/plan")
    assert status == 404 and body["error"]["code"] == "sync_not_found"
    status, body = await core.call("POST", "/api/syncs/local/apply", json={})
    assert status == 400 and "plan_id" in body["error"]["message"]
    status, body = await core.call("POST", "/api/syncs/local/apply", data=b"x" * 10000)
    assert status == 413 and body["error"]["code"] == "body_too_large"
    status, body = await core.call("GET", "/api/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_self_referencing_sync_applies_its_own_change_next_run(tmp_path: Path) -> None:
    own = tmp_path / "homelab.toml"
    body = """
[[resource_sync]]
name = "homelab"
[resource_sync.config]
files_on_host = true
resource_path = ["homelab.toml"]
delete = false

[[server]]
name = "h1"

[[stack]]
name = "a"
[stack.config]
server = "h1"

[[stack]]
name = "b"
[stack.config]
server = "h1"
"""
    own.write_text(body)
    # The core's local resources only point at the sync; the sync reads its own file.
    local = (
        '[[resource_sync]]\nname = "homelab"\n[resource_sync.config]\n'
        f'files_on_host = true\nresource_path = ["{own}"]\n'
    )
    async for core in _start(tmp_path, local):
        _, p0 = await core.call("POST", "/api/syncs/local/plan")
        await core.call("POST", "/api/syncs/local/apply", json={"plan_id": p0["id"]})
        _, syncs = await core.call("GET", "/api/syncs")
        assert syncs["syncs"] == ["homelab", "local"]

        _, p1 = await core.call("POST", "/api/syncs/homelab/plan")
        assert {(c["kind"], c["name"]) for c in p1["changes"]} >= {("stack", "a"), ("stack", "b")}
        await core.call("POST", "/api/syncs/homelab/apply", json={"plan_id": p1["id"]})

        # The sync turns on delete and drops stack b in the same edit.
        own.write_text(
            body.replace("delete = false", "delete = true").split('[[stack]]\nname = "b"')[0]
        )
        _, p2 = await core.call("POST", "/api/syncs/homelab/plan")
        actions = {(c["kind"], c["name"]): c["action"] for c in p2["changes"]}
        assert actions == {("resource_sync", "homelab"): "update"}, p2  # no delete yet
        await core.call("POST", "/api/syncs/homelab/apply", json={"plan_id": p2["id"]})

        _, p3 = await core.call("POST", "/api/syncs/homelab/plan")
        actions = {(c["kind"], c["name"]): c["action"] for c in p3["changes"]}
        assert actions == {("stack", "b"): "delete"}, p3  # the new options apply now


async def test_two_applies_racing_over_http_one_wins(core: Core) -> None:
    import anyio

    _, first = await core.call("POST", "/api/syncs/local/plan")
    core.resources.write_text(RESOURCES.replace('"stacks/web"', '"stacks/www"'))
    _, second = await core.call("POST", "/api/syncs/local/plan")
    assert first["id"] != second["id"]
    results: dict[str, tuple[int, Any]] = {}

    async def apply(plan_id: str) -> None:
        results[plan_id] = await core.call(
            "POST", "/api/syncs/local/apply", json={"plan_id": plan_id}
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(apply, first["id"])
        tg.start_soon(apply, second["id"])
    statuses = sorted(status for status, _ in results.values())
    assert statuses == [200, 409], results
    winner = next(pid for pid, (status, _) in results.items() if status == 200)
    _, listing = await core.call("GET", "/api/resources?kind=stack")
    web_dir = next(r for r in listing["resources"] if r["name"] == "web")["config"]["run_directory"]
    assert web_dir == ("stacks/web" if winner == first["id"] else "stacks/www")
    assert listing["revision"] == 1


async def test_deep_json_and_huge_ids_are_400_not_500(core: Core) -> None:
    """Issue 12, item 6: deep JSON and ids SQLite cannot hold are the caller's mistake."""
    deep = b"[" * 2000 + b"]" * 2000  # under max_body_bytes (4096 here), far over the depth
    for path in ("/api/syncs/local/apply", "/auth/login"):
        json = {"Content-Type": "application/json"}
        status, body = await core.call("POST", path, data=deep, headers=json)
        assert status == 400, (path, body)
        assert body["error"]["code"] == "bad_request", (path, body)
    huge = "1" * 30
    paths = ("/api/runs/", "/api/deploys/", "/api/intents/")
    for path in [p + huge for p in paths] + [f"/api/deploys/{huge}/log"]:
        status, body = await core.call("GET", path)
        assert status == 400, (path, body)
        assert "below 2^63" in body["error"]["message"]


async def test_control_characters_in_a_request_cannot_forge_a_log_line(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, item 6: a ``%0A`` in the path or a header is escaped in the log line."""
    caplog.set_level(logging.DEBUG)
    forged = "x%0A2026-11-30 12:00:00 INFO core: FORGED%0D%1B[31m"
    async with core.session.post(
        f"{core.url}/listener/github/stack/{forged}/deploy",
        data=b'{"ref": "refs/heads/main"}',
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},
    ) as r:
        assert r.status in (401, 404)
    status, _ = await core.call("GET", "/api/stacks/web%0AFORGED")
    assert status == 404
    messages = [rec.getMessage() for rec in caplog.records]
    assert any("webhook" in m for m in messages), messages  # the refusal was logged...
    for m in messages:  # ...and no record holds a line break or an escape of the request's
        assert "\n" not in m and "\r" not in m and "\x1b" not in m, m
