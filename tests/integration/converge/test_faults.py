"""Convergence under faults: real core and periphery processes, a real engine, faults injected
(kill -9, SIGTERM, SIGSTOP, twenty requests at once, a full disk, a lost database). Each test
asserts the state afterwards: no record left open, and every stack converged."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from core.client import CoreClient
from tests.integration.deploys.test_core_deploys import resource_file, stack_files
from tests.support.homelab import IMAGE, Repo
from tests.support.processes import CoreProcess, KeyPair, Periphery

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

# A Compose stack whose health takes a few seconds (its server starts late): a deploy spends
# that long in the health gate, where the tests strike.
SLOW_HEALTH = """services:
  web:
    image: {image}
    init: true
    command: ["sh", "-c", "sleep 4; exec httpd -f -p 8080 -h /www"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 250ms
      timeout: 2s
      retries: 60
"""


@dataclass
class Lab:
    core: CoreProcess
    agent: Periphery
    repo: Repo
    prefix: str
    tmp: Path

    def client(self) -> CoreClient:
        return CoreClient(self.core.url, self.core.token, timeout=30)

    def write(self, stacks: list[dict[str, Any]], slow: tuple[str, ...] = ()) -> None:
        files = stack_files(stacks)
        for name in slow:
            files[f"stacks/{name}/compose.yaml"] = SLOW_HEALTH.format(image=IMAGE)
        self.repo.commit(files)
        self.core.resources.write_text(
            resource_file(self.prefix, self.repo, self.agent.keys.public.openssh_line(), stacks)
        )

    def name(self, short: str) -> str:
        return f"{self.prefix}-{short}"


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    with anyio.move_on_after(within):
        while not await check():  # noqa: ASYNC110 (polling the core's API)
            await anyio.sleep(0.2)
        return
    raise AssertionError(f"not {what} within {within:g}s")


async def step_started(client: CoreClient, run_id: int, stack: str, step: str) -> bool:
    run = await client.run(run_id)
    return any(
        d["stack"] == stack and any(s["step"] == step for s in d["steps"]) for d in run["deploys"]
    )


async def converged(client: CoreClient, names: list[str]) -> bool:
    view = await client.reconcile()
    return all(view["stacks"].get(n, {}).get("converged") for n in names)


async def nothing_open(client: CoreClient, up_to_run: int) -> list[str]:
    """Runs and deploys still pending or running, for the assertion message."""
    open_ = []
    for run_id in range(1, up_to_run + 1):
        try:
            run = await client.run(run_id)
        except Exception:
            continue
        if run["status"] == "running":
            open_.append(f"run {run_id}")
        open_ += [
            f"deploy {d['id']} ({d['stack']}) {d['status']}"
            for d in run["deploys"]
            if d["status"] in ("pending", "running")
        ]
    return open_


async def last_run(client: CoreClient) -> int:
    return max((s["recorded"] or {}).get("run", 0) for s in await client.stacks())


async def make_lab(
    tmp_path: Path, core_keys: KeyPair, periphery_factory: Any, prefix: str, **core: Any
) -> Lab:
    """A real core (only the reconcile passes a fault calls for: start, reconnect) and a real
    agent dialing it; stop both with ``stop_lab``."""
    process = CoreProcess(
        tmp_path / "core",
        core_keys,
        secrets.token_hex(12),
        reconcile_interval=3600,
        drift_grace=120,
        **core,
    )
    process.start_and_wait()
    agent = periphery_factory.make(
        "agent",
        listen="",
        core_address=f"ws://127.0.0.1:{process.port}",
        server_name="manager",
        reconnect_initial_delay=0.1,
        reconnect_max_delay=0.5,
        heartbeat_interval=1.0,
    )
    await anyio.to_thread.run_sync(agent.start_and_wait)
    return Lab(process, agent, Repo(tmp_path / "repo"), prefix, tmp_path)


def stop_lab(lab: Lab) -> None:
    lab.agent.stop()
    lab.core.stop()


@pytest.fixture
async def lab(
    tmp_path: Path, core_keys: KeyPair, periphery_factory: Any, docker_env: Any
) -> AsyncIterator[Lab]:
    made = await make_lab(tmp_path, core_keys, periphery_factory, docker_env.prefix)
    try:
        yield made
    finally:
        stop_lab(made)


TIERED = [
    {"name": "a", "tier": "infrastructure", "mode": "compose", "pre": "sleep 4"},
    {"name": "b", "tier": "platform", "mode": "compose"},
    {"name": "c", "tier": "platform", "mode": "compose", "after": ["b"]},
]


async def _kill_core_mid_deploy(lab: Lab, how: signal.Signals) -> dict[str, Any]:
    lab.write(TIERED)
    names = [lab.name(s["name"]) for s in TIERED]
    async with lab.client() as client:
        applied = await client.sync()
        run_id = applied["run"]
        await until(
            lambda: step_started(client, run_id, lab.name("a"), "pre_deploy"), 30, "in pre_deploy"
        )
    stopped = time.monotonic()
    if how is signal.SIGKILL:
        lab.core.kill()
    else:
        lab.core.signal(how)
        assert lab.core.proc is not None
        assert lab.core.proc.wait(10) == 0
    stop_seconds = time.monotonic() - stopped
    lab.core.start_and_wait()
    async with lab.client() as client:
        first = await client.run(run_id)
        # Within one reconcile (the one at start) every stack converges.
        await until(lambda: converged(client, names), 90, "converged after the restart")
        assert await nothing_open(client, await last_run(client)) == []
        stacks = {s["name"]: s for s in await client.stacks()}
        carrying = {stacks[n]["recorded"]["run"] for n in names}
        assert len(carrying) == 1, carrying  # one run, from the start, in tier order
        again = await client.run(carrying.pop())
        assert again["source"] == "startup", again
        assert all(d["status"] == "healthy" for d in again["deploys"])
        order = sorted(again["deploys"], key=lambda d: d["started_at"])
        assert order[0]["stack"] == lab.name("a")  # tier order
        events = await finished_events(lab, run_id)
    return {"first": first, "events": events, "stop_seconds": stop_seconds}


async def finished_events(lab: Lab, run_id: int) -> dict[str, str]:
    """The ``deploy.finished`` events of a run, replayed from the store: stack -> status."""
    out: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            f"{lab.core.url}/ws/events?since=0&kind=deploy.finished",
            headers={"Authorization": f"Bearer {lab.core.token}"},
        ) as ws:
            with anyio.fail_after(10):
                async for msg in ws:
                    data = msg.json()
                    if data.get("control") == "live":
                        break
                    if data.get("data", {}).get("run") == run_id:
                        out[data["data"]["stack"]] = data["data"]["status"]
    return out


async def test_kill_9_of_the_core_mid_deploy_then_a_restart_converges(lab: Lab) -> None:
    seen = await _kill_core_mid_deploy(lab, signal.SIGKILL)
    first = seen["first"]
    assert first["status"] == "interrupted"
    statuses = {d["stack"]: d["status"] for d in first["deploys"]}
    assert set(statuses.values()) == {"interrupted"}, statuses
    assert all("stopped before it ended" in d["reason"] for d in first["deploys"])
    assert seen["events"] == statuses  # each closed with an event, by the next start


async def test_sigterm_of_the_core_mid_deploy_records_interrupted_then_converges(
    lab: Lab,
) -> None:
    seen = await _kill_core_mid_deploy(lab, signal.SIGTERM)
    first = seen["first"]
    assert first["status"] == "interrupted"
    reasons = {d["stack"]: d["reason"] for d in first["deploys"]}
    # The stopping core closed them itself (shielded), the deploy it was in and those waiting.
    assert reasons[lab.name("a")] == "the core stopped during the deploy"
    assert reasons[lab.name("b")] == "the core stopped before it started"
    assert set(seen["events"].values()) == {"interrupted"}
    assert seen["stop_seconds"] < 3.0, seen["stop_seconds"]


@pytest.mark.parametrize("fault", ["kill", "stop"])
async def test_a_periphery_lost_in_the_health_gate_then_back_deploys_the_dependents(
    lab: Lab, fault: str
) -> None:
    stacks = [
        {"name": "x", "tier": "infrastructure", "mode": "compose"},
        {"name": "y", "tier": "platform", "mode": "compose"},
    ]
    lab.write(stacks, slow=("x",))
    names = [lab.name("x"), lab.name("y")]
    async with lab.client() as client:
        applied = await client.sync()
        run_id = applied["run"]
        await until(lambda: step_started(client, run_id, names[0], "health"), 30, "in health")
        if fault == "kill":
            lab.agent.signal(signal.SIGKILL)
        else:
            lab.agent.signal(signal.SIGSTOP)
        run = await client.wait_run(run_id, within=60)
        by = {d["stack"]: d for d in run["deploys"]}
        assert by[names[0]]["status"] == "failed", by[names[0]]
        assert by[names[1]]["status"] == "skipped"
        assert by[names[1]]["reason"] == f"not deployed: {names[0]} failed"
        if fault == "kill":
            await anyio.to_thread.run_sync(lab.agent.start_and_wait)
        else:
            lab.agent.signal(signal.SIGCONT)
        # Back: the reconciler deploys what failed for want of it, and what waited for that.
        await until(lambda: converged(client, names), 90, "converged once the agent is back")
        assert await nothing_open(client, await last_run(client)) == []


async def test_twenty_requests_for_one_stack_and_ten_for_others_at_once(lab: Lab) -> None:
    stacks = [{"name": f"s{i}", "tier": "infrastructure", "mode": "compose"} for i in range(11)]
    lab.write(stacks)
    names = [lab.name(s["name"]) for s in stacks]
    async with lab.client() as client:
        applied = await client.sync()
        for run_id in set(applied["runs"].values()):
            await client.wait_run(run_id, within=120)
        before = {s["name"]: s["recorded"]["id"] for s in await client.stacks()}
        answers: list[dict[str, Any]] = []

        async def ask(name: str) -> None:
            answers.append(await client.deploy(name))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(ask, names[0])
            for name in names[1:]:
                tg.start_soon(ask, name)
        assert len(answers) == 30
        runs_for_s0 = {a["id"] for a in answers if a["deploys"][0]["stack"] == names[0]}
        # Twenty requests released together: one run carries them (the twenty coalesce).
        assert len(runs_for_s0) == 1, runs_for_s0
        for run_id in {a["id"] for a in answers}:
            run = await client.wait_run(run_id, within=120)
            assert run["status"] == "succeeded", run
        # Exactly one new deploy per stack, all healthy, nothing pending.
        after = await client.stacks()
        for s in after:
            if s["name"] in names:
                assert s["recorded"]["status"] == "healthy", s
                assert s["recorded"]["id"] != before[s["name"]]
        deploys_of_s0 = [
            d for run_id in runs_for_s0 for d in (await client.run(run_id))["deploys"]
        ]
        assert len(deploys_of_s0) == 1
        assert await nothing_open(client, await last_run(client)) == []


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def _fill(path: Path) -> Path:
    """Fill the file system of ``path`` to the last byte."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_a_full_disk_mid_run_then_space_back_closes_every_record(
    tmp_path: Path, core_keys: KeyPair, periphery_factory: Any, docker_env: Any
) -> None:
    data = tmp_path / "small"
    await anyio.to_thread.run_sync(_mount_tmpfs, data, "16m")
    try:
        lab = await make_lab(
            tmp_path, core_keys, periphery_factory, docker_env.prefix, data_dir=str(data / "core")
        )
        core = lab.core
        try:
            stacks = [
                {"name": "d1", "tier": "infrastructure", "mode": "compose", "pre": "sleep 2"},
                {"name": "d2", "tier": "platform", "mode": "compose"},
            ]
            lab.write(stacks)
            async with lab.client() as client:
                applied = await client.sync()
                run_id = applied["run"]
                await until(
                    lambda: step_started(client, run_id, lab.name("d1"), "pre_deploy"),
                    30,
                    "in pre_deploy",
                )
                filler = await anyio.to_thread.run_sync(_fill, data)  # full, mid-run
                await anyio.to_thread.run_sync(
                    core.wait_for, r"not recorded yet|disk is full|database or disk", 60
                )
                await anyio.sleep(2)
                filler.unlink()  # space is back
                try:
                    await until(
                        lambda: _run_ended(client, run_id), 90, "the run closed once space is back"
                    )
                except AssertionError as exc:
                    log = "\n".join(core.lines[-40:])
                    raise AssertionError(f"{exc}; the core's log:\n{log}") from None
                assert await nothing_open(client, run_id) == []
                run = await client.run(run_id)
                assert {d["status"] for d in run["deploys"]} <= {"healthy", "failed"}
        finally:
            stop_lab(lab)
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)  # noqa: ASYNC221


async def _run_ended(client: CoreClient, run_id: int) -> bool:
    try:
        return bool((await client.run(run_id))["status"] != "running")
    except Exception:
        return False


async def test_a_lost_database_continues_above_the_agents_fences(lab: Lab) -> None:
    """The core's data_dir lost (or restored from an old backup): the agent has seen higher
    fencing tokens than the new database hands out; the core learns them when the agent
    connects and continues above, so deploys are not refused as stale."""
    stacks = [{"name": "f", "tier": "infrastructure", "mode": "compose"}]
    lab.write(stacks)
    async with lab.client() as client:
        applied = await client.sync()
        assert (await client.wait_run(applied["run"]))["status"] == "succeeded"
        for _ in range(2):
            run = await client.deploy(lab.name("f"))
            assert (await client.wait_run(run["id"]))["status"] == "succeeded"
    lab.core.stop()
    data = lab.core.workdir / "data"
    data.rename(lab.core.workdir / "data-lost")  # the database is gone
    await anyio.to_thread.run_sync(lab.core.start_and_wait)
    async with lab.client() as client:
        applied = await client.sync()  # the server is known again: the agent is let in
        run = await client.wait_run(applied["run"])
        assert run["status"] == "succeeded", run
        assert run["deploys"][0]["fence"] > 3
    lab.core.wait_for(r"has seen fencing token \d+, above this core's", 5)  # and says so
