"""Deploys driven by the core: real core (in-process), real periphery process, real engine."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from core.config import load_config
from tests.support.core_server import CoreClient, start_core
from tests.support.homelab import COMPOSE_STACK, IMAGE, SWARM_STACK, Repo
from tests.support.processes import KeyPair, Periphery, toml_value, write_toml

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

WEBHOOK_SECRET = "webhook-secret-for-tests"


@dataclass
class Core(CoreClient):
    periphery: Periphery
    resources: Path


def resource_file(prefix: str, repo: Repo, key_line: str, stacks: list[dict[str, Any]]) -> str:
    out = [
        'tiers = ["infrastructure", "platform", "application"]',
        '[[server]]\nname = "manager"\n[server.config]\npublic_key = ' + toml_value(key_line),
        '[[swarm]]\nname = "lab"\n[swarm.config]\nservers = ["manager"]',
        '[[repo]]\nname = "lab"\n[repo.config]\nurl = ' + toml_value(repo.url),
        '[[variable]]\nname = "TOKEN"\nvalue = "s3cr3t-value"\nis_secret = true',
    ]
    for s in stacks:
        block = [f'[[stack]]\nname = "{prefix}-{s["name"]}"\ndeploy = true\ntier = "{s["tier"]}"']
        if s.get("after"):
            block.append("after = " + toml_value([f"{prefix}-{a}" for a in s["after"]]))
        if s.get("on_drift"):
            block.append(f"on_drift = {toml_value(s['on_drift'])}")
        block.append("[stack.config]")
        block.append('swarm = "lab"' if s["mode"] == "swarm" else 'server = "manager"')
        block.append(f'linked_repo = "lab"\nrun_directory = "stacks/{s["name"]}"')
        block.append('environment = "TOKEN=[[TOKEN]]"')
        if s["mode"] == "compose":
            block.append("auto_pull = false")
        if s.get("pre"):
            block.append(f"pre_deploy = {{ command = {toml_value(s['pre'])} }}")
        block.append(f"[stack.config.health]\ntimeout = {s.get('timeout', 60)}")
        out.append("\n".join(block))
    return "\n\n".join(out) + "\n"


async def replayed_kinds(core: CoreClient, resource: str) -> list[str]:
    """The kinds of every stored event of ``resource`` (``/ws/events?since=0``)."""
    kinds: list[str] = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            core.url.replace("http://", "ws://") + f"/ws/events?since=0&resource={resource}",
            headers={"Authorization": f"Bearer {core.token}"},
        ) as ws:
            with anyio.fail_after(10):
                async for msg in ws:
                    data = msg.json()
                    if data.get("control") == "live":
                        break
                    if "kind" in data:
                        kinds.append(data["kind"])
    return kinds


def stack_files(stacks: list[dict[str, Any]]) -> dict[str, str]:
    files = {}
    for s in stacks:
        if s["mode"] == "swarm":
            files[f"stacks/{s['name']}/compose.yaml"] = SWARM_STACK.format(
                image=IMAGE, probe=s.get("probe", "wget")
            )
        else:
            files[f"stacks/{s['name']}/compose.yaml"] = COMPOSE_STACK.format(image=IMAGE)
    return files


@pytest.fixture
async def core(  # type: ignore[no-untyped-def]
    request: pytest.FixtureRequest, tmp_path: Path, core_keys: KeyPair, periphery_factory
) -> AsyncIterator[Core]:
    token = secrets.token_hex(8)
    resources = tmp_path / "resources.toml"
    resources.write_text("")
    config_path = write_toml(
        tmp_path / "core.toml",
        {
            "listen": "127.0.0.1:0",
            "data_dir": str(tmp_path / "data"),
            "private_key": str(core_keys.path),
            "api_tokens": [token],
            "resources": [str(resources)],
            "webhook_secret": WEBHOOK_SECRET,
            "poll_interval": 0,  # tests drive syncs themselves, unless they ask for polling
            **getattr(request, "param", {}),
        },
    )
    config = load_config(config_path)
    async with anyio.create_task_group() as tg:
        port, _ = await start_core(tg, config)
        periphery = periphery_factory.make(
            "agent",
            listen="",
            core_address=f"ws://127.0.0.1:{port}",
            server_name="manager",
            reconnect_initial_delay=0.1,
            reconnect_max_delay=0.5,
        )
        await anyio.to_thread.run_sync(periphery.start_and_wait)
        yield Core(f"http://127.0.0.1:{port}", token, periphery, resources)
        tg.cancel_scope.cancel()


async def test_tiers_failures_and_skips_through_the_core(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    p = docker_env.prefix
    stacks = [
        {
            "name": "infra",
            "tier": "infrastructure",
            "mode": "swarm",
            # Komodo: the env file is written before pre_deploy runs, in the run directory
            "pre": "grep -qx TOKEN=[[TOKEN]] .env && echo token is [[TOKEN]]",
        },
        {"name": "db", "tier": "platform", "mode": "compose"},
        {"name": "broken", "tier": "platform", "mode": "compose", "pre": "echo no; exit 3"},
        {"name": "after-broken", "tier": "platform", "mode": "compose", "after": ["broken"]},
    ]
    repo = Repo(tmp_path / "repo")
    repo.commit(stack_files(stacks))
    core.resources.write_text(
        resource_file(p, repo, core.periphery.keys.public.openssh_line(), stacks)
    )
    applied = await core.sync()
    assert applied["run"] is not None, applied
    run = await core.wait_run(applied["run"])
    by_stack = {d["stack"].removeprefix(p + "-"): d for d in run["deploys"]}
    assert run["status"] == "failed"
    assert by_stack["infra"]["status"] == "healthy", by_stack["infra"]
    assert by_stack["db"]["status"] == "healthy", by_stack["db"]
    assert by_stack["broken"]["status"] == "failed"
    assert "pre_deploy" in by_stack["broken"]["reason"]
    assert by_stack["after-broken"]["status"] == "skipped"
    assert by_stack["after-broken"]["reason"] == f"not deployed: {p}-broken failed"
    steps = [s["step"] for s in by_stack["infra"]["steps"]]
    assert steps == ["checkout", "pre_deploy", "deploy", "health"]
    # Output is kept with the deploy, and the secret never is.
    status, log = await core.call("GET", f"/api/deploys/{by_stack['infra']['id']}/log")
    text = "".join(line["text"] for line in log["lines"])
    assert "token is ***" in text and "s3cr3t-value" not in text
    # What runs now: the state query answers 200 for a healthy stack, 503 for one not running.
    status, state = await core.call("GET", f"/api/stacks/{p}-db")
    assert status == 200 and state["healthy"] is True, state
    assert [s["state"] for s in state["services"]] == ["ready"]
    assert state["last_deploy"]["status"] == "healthy"
    status, state = await core.call("GET", f"/api/stacks/{p}-broken")
    assert status == 503 and state["healthy"] is False and state["running"] is False
    status, listing = await core.call("GET", "/api/stacks")
    assert {s["name"]: (s["last_deploy"] or {}).get("status") for s in listing["stacks"]} == {
        f"{p}-infra": "healthy",
        f"{p}-db": "healthy",
        f"{p}-broken": "failed",
        f"{p}-after-broken": "skipped",
    }
    # Only the one run: the infrastructure tier finished before the platform tier began.
    infra_end = by_stack["infra"]["finished_at"]
    assert all(by_stack[n]["started_at"] >= infra_end for n in ("db", "broken"))


async def test_an_unhealthy_stack_fails_with_its_reason_and_deploys_never_overlap(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    p = docker_env.prefix
    stacks = [
        {
            "name": "sick",
            "tier": "infrastructure",
            "mode": "swarm",
            "probe": "false",
            "timeout": 20,
        },
        {"name": "slow", "tier": "infrastructure", "mode": "compose", "pre": "sleep 2"},
    ]
    repo = Repo(tmp_path / "repo")
    repo.commit(stack_files(stacks))
    core.resources.write_text(
        resource_file(p, repo, core.periphery.keys.public.openssh_line(), stacks)
    )
    applied = await core.sync()
    # While the first run holds the stacks, "this exact run or nothing" is refused, and a plain
    # request joins the deploy that is waiting for the stack (or the one follow-up after it).
    status, refused = await core.call("POST", f"/api/stacks/{p}-slow/deploy?exclusive=true")
    assert status == 409 and "already being deployed" in refused["error"]["message"]
    status, joined = await core.call("POST", f"/api/stacks/{p}-slow/deploy")
    assert status == 202 and joined["intent"] > 0, joined
    run = await core.wait_run(applied["run"], within=90)
    follow_up = await core.wait_run(joined["id"], within=90)  # the apply's, or one after it
    assert [d["status"] for d in follow_up["deploys"] if d["stack"] == f"{p}-slow"] == ["healthy"]
    by_stack = {d["stack"].removeprefix(p + "-"): d for d in run["deploys"]}
    assert by_stack["sick"]["status"] == "failed"
    assert "health" in by_stack["sick"]["reason"] and "web" in by_stack["sick"]["reason"]
    assert by_stack["slow"]["status"] == "healthy"
    # Deploying the one stack again, alone: only it runs.
    status, again = await core.call("POST", f"/api/stacks/{p}-slow/deploy")
    assert status == 202, again
    assert [d["stack"] for d in again["deploys"]] == [f"{p}-slow"]
    done = await core.wait_run(again["id"])
    assert done["status"] == "succeeded"
    assert done["deploys"][0]["fence"] > by_stack["slow"]["fence"]


async def test_a_dead_agent_mid_deploy_fails_the_stack_and_skips_what_follows(
    core: Core, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import signal as signals

    p = docker_env.prefix
    stacks = [
        {
            "name": "first",
            "tier": "infrastructure",
            "mode": "compose",
            "pre": "echo started; sleep 30",
        },
        {"name": "second", "tier": "platform", "mode": "compose"},
    ]
    repo = Repo(tmp_path / "repo")
    repo.commit(stack_files(stacks))
    core.resources.write_text(
        resource_file(p, repo, core.periphery.keys.public.openssh_line(), stacks)
    )
    applied = await core.sync()
    with anyio.fail_after(30):
        while True:
            status, deploy = await core.call("GET", f"/api/runs/{applied['run']}")
            first = next(d for d in deploy["deploys"] if d["stack"] == f"{p}-first")
            if any(s["step"] == "pre_deploy" for s in first["steps"]):
                break
            await anyio.sleep(0.1)
    core.periphery.signal(signals.SIGKILL)
    run = await core.wait_run(applied["run"], within=30)
    by_stack = {d["stack"].removeprefix(p + "-"): d for d in run["deploys"]}
    assert by_stack["first"]["status"] == "failed"
    assert "lost the periphery of 'manager'" in by_stack["first"]["reason"]
    assert by_stack["second"]["status"] == "skipped"
    assert by_stack["second"]["reason"] == f"not deployed: {p}-first failed"


async def test_the_deploy_and_status_commands(core: Core, docker_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os

    from tests.support.processes import stackward_argv

    p = docker_env.prefix
    stacks = [{"name": "cli", "tier": "infrastructure", "mode": "compose", "pre": "echo checked"}]
    repo = Repo(tmp_path / "repo")
    repo.commit(stack_files(stacks))
    core.resources.write_text(
        resource_file(p, repo, core.periphery.keys.public.openssh_line(), stacks)
    )
    applied = await core.sync()
    await core.wait_run(applied["run"])
    env = {**os.environ, "STACKWARD_URL": core.url, "STACKWARD_TOKEN": core.token}
    done = await anyio.run_process(
        stackward_argv("deploy", f"{p}-cli", "--follow", "--color", "never"), env=env, check=False
    )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "pre_deploy |" in out and "checked" in out  # output lines under their deploy
    assert f"✔ {p}-cli" in out and "succeeded: 1/1 healthy" in out
    done = await anyio.run_process(
        stackward_argv("status", f"{p}-cli", "--color", "never"), env=env, check=False
    )
    assert done.returncode == 0 and b"healthy" in done.stdout, done.stdout + done.stderr
    done = await anyio.run_process(
        stackward_argv("status", "--color", "never"), env=env, check=False
    )
    assert done.returncode == 0 and f"{p}-cli".encode() in done.stdout
    done = await anyio.run_process(stackward_argv("deploy", "nope"), env=env, check=False)
    assert done.returncode == 1 and b"stack_not_found" in done.stderr
    # The short status for uptime monitors needs the token unless public_status is on.
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{core.url}/status/{p}-cli") as r:
            assert r.status == 401
        headers = {"Authorization": f"Bearer {core.token}"}
        async with session.get(f"{core.url}/status/{p}-cli", headers=headers) as r:
            assert r.status == 200 and (await r.json())["healthy"] is True
