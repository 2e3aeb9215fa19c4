"""Events and drift on the real engine: a real core (in-process) with a real periphery process.

A deploy is followed on ``/ws/events``; then stacks are changed by hand (a container killed, a
service scaled) and the core notices, as its ``on_drift`` says.
"""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import anyio
import pytest

from tests.integration.deploys.test_core_deploys import Core, core, resource_file, stack_files
from tests.support.events import watch
from tests.support.homelab import Repo

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

__all__ = ["core"]

STACKS = [
    # 3 MB of pre-deploy output: more than the stuck subscriber's buffers and queue can hold
    {
        "name": "alert",
        "tier": "infrastructure",
        "mode": "compose",
        "pre": "yes stackward-output-line | head -c 3000000",
    },
    {"name": "heal", "tier": "infrastructure", "mode": "compose", "on_drift": "redeploy"},
    {"name": "sw", "tier": "platform", "mode": "swarm"},
]


def stuck_subscriber(url: str, token: str) -> socket.socket:
    """A subscriber that sends its upgrade and never reads: it must not slow the deploys."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        (
            f"GET /ws/events HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    return sock


def container_of(docker_env, project: str) -> str:  # type: ignore[no-untyped-def]
    ids: str = docker_env.docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"
    )
    assert ids and len(ids.split()) == 1, ids
    return ids


@pytest.mark.parametrize(
    "core", [{"drift_grace": 1.0, "event_queue": 16, "public_status": True}], indirect=True
)
async def test_deploys_on_the_stream_and_drift_by_hand(
    docker_env,  # first: torn down after the core, which could otherwise still be deploying
    core: Core,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    p = docker_env.prefix
    repo = Repo(tmp_path / "repo")
    repo.commit(stack_files(STACKS))
    core.resources.write_text(
        resource_file(p, repo, core.periphery.keys.public.openssh_line(), STACKS)
    )
    stuck = stuck_subscriber(core.url, core.token)
    try:
        async with watch(core.url, core.token) as w:
            applied = await core.sync()
            run = await core.wait_run(applied["run"], within=120)
            assert run["status"] == "succeeded", run

            # The whole deploy is on the stream, in order, per stack.
            for name in ("alert", "heal", "sw"):
                stack = f"stack:{p}-{name}"
                finished = await w.wait(
                    lambda e, s=stack: e["kind"] == "deploy.finished" and e["resource"] == s,
                    what=f"deploy.finished {stack}",
                )
                assert finished["data"]["status"] == "healthy"
                kinds = [e["kind"] for e in w.events if e["resource"] == stack]
                assert kinds.index("deploy.started") < kinds.index("deploy.finished")
                steps = [e["data"]["step"] for e in w.of("deploy.step", stack)]
                assert {"checkout", "deploy", "health"} <= set(steps), steps
                await w.wait(
                    lambda e, s=stack: (
                        e["kind"] == "health.changed"
                        and e["resource"] == s
                        and e["data"]["healthy"]
                    ),
                    what=f"health.changed {stack}",
                )
            assert w.of("plan.made") and w.of("resource.applied")
            assert any(e["data"]["text"] for e in w.of("deploy.output"))
            # The secret in the environment never reaches the stream.
            assert all("s3cr3t-value" not in str(e) for e in w.events)

            # A subscriber that never read was lagged (dropped events), and the deploys
            # were not slowed: each compose stack took its usual few seconds.
            seconds = {e["resource"]: e["data"]["seconds"] for e in w.of("deploy.finished")}
            assert all(s < 30 for s in seconds.values()), seconds
            async with aiohttp.ClientSession() as session:
                async with session.get(core.url + "/metrics") as r:
                    metrics = await r.text()
            dropped = [
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("stackward_events_dropped_total{subscriber=")
                and 'subscriber="gone"' not in line
            ]
            assert max(dropped) > 0, metrics

            # A container killed by hand (no restart policy): drift after the grace period.
            docker_env.docker("kill", container_of(docker_env, f"{p}-alert"))
            drift = await w.wait(
                lambda e: e["kind"] == "drift" and e["resource"] == f"stack:{p}-alert",
                within=30,
                what="drift of alert",
            )
            assert drift["data"]["reason"] == "dead" and drift["data"]["action"] == "alert"
            assert "web" in drift["data"]["detail"]
            assert w.of("docker.event", f"stack:{p}-alert")
            unhealthy = await w.wait(
                lambda e: (
                    e["kind"] == "health.changed"
                    and e["resource"] == f"stack:{p}-alert"
                    and not e["data"]["healthy"]
                ),
                what="alert unhealthy",
            )
            assert unhealthy["data"]["previous"] is True
            # An uptime monitor (no token: public_status) sees it too.
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{core.url}/status/{p}-alert") as r:
                    body = await r.json()
                    assert r.status == 503 and body["healthy"] is False, body
                    assert body["unhealthy"] == ["web"]
                async with session.get(f"{core.url}/status/{p}-sw") as r:
                    assert r.status == 200 and (await r.json())["healthy"] is True
                async with session.get(f"{core.url}/status/nope") as r:
                    assert r.status == 404

            # on_drift = "redeploy": the core deploys the stack again, and it runs again.
            heal = container_of(docker_env, f"{p}-heal")
            docker_env.docker("kill", heal)
            healed = await w.wait(
                lambda e: e["kind"] == "drift" and e["resource"] == f"stack:{p}-heal",
                within=30,
                what="drift of heal",
            )
            assert healed["data"]["action"] == "redeploy" and healed["data"]["run"]
            rerun = await core.wait_run(healed["data"]["run"], within=60)
            assert rerun["status"] == "succeeded", rerun
            state = docker_env.docker("inspect", "-f", "{{.State.Status}}", heal)
            assert state == "running"

            # A swarm service scaled by hand: drift at once.
            docker_env.docker("service", "scale", "-d", f"{p}-sw_web=2")
            scaled = await w.wait(
                lambda e: e["kind"] == "drift" and e["resource"] == f"stack:{p}-sw",
                within=30,
                what="drift of sw",
            )
            assert scaled["data"]["reason"] == "changed"
            assert "1 → 2" in scaled["data"]["detail"], scaled

            # Killed while its periphery was away (no event can tell): seen when it is back.
            core.periphery.stop()
            docker_env.docker("kill", container_of(docker_env, f"{p}-heal"))
            await anyio.to_thread.run_sync(core.periphery.start_and_wait)
            back = await w.wait(
                lambda e: (
                    e["kind"] == "drift"
                    and e["resource"] == f"stack:{p}-heal"
                    and e["id"] > healed["id"]
                ),
                within=30,
                what="drift of heal after the periphery came back",
            )
            assert "came back" in back["data"]["detail"] and back["data"]["action"] == "redeploy"
            assert w.of("periphery.lost", "server:manager")
            rerun = await core.wait_run(back["data"]["run"], within=60)
            assert rerun["status"] == "succeeded", rerun
    finally:
        stuck.close()
