"""Alerters end to end: a real core (in-process), a real periphery process, the real engine, and a
local HTTP receiver per endpoint type that keeps every request it gets, so each test checks the
exact request Komodo's alerter would send (bin/core/src/alert/{ntfy,discord,slack}.rs, mod.rs
send_custom_alert), its filters (mod.rs send_alert_to_alerter: alert_types, resources,
except_resources, maintenance_windows) and send_alerts on a stack.

An endpoint that never answers costs the deploys nothing: its alerts wait in their own queue,
each attempt ends at alert_timeout, and after alert_retries more (alert_backoff apart) the alert
is an ``alert.failed`` event.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiohttp import web

from tests.engine.fixtures import docker
from tests.integration.deploys.test_core_deploys import Core, core
from tests.support.events import watch
from tests.support.homelab import COMPOSE_STACK, IMAGE
from tests.support.processes import toml_value

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

__all__ = ["core"]

GOOD = COMPOSE_STACK.format(image=IMAGE)


@dataclass
class Receivers:
    """One loopback HTTP server; each path is an endpoint; ``/hang`` never answers."""

    port: int = 0
    got: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    hung: list[float] = field(default_factory=list)
    arrived: anyio.Event = field(default_factory=anyio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        body = await request.read()
        if path == "hang":
            self.hung.append(time.monotonic())
            await anyio.sleep(3600)
        self.got.setdefault(path, []).append(
            {"method": request.method, "headers": dict(request.headers), "body": body}
        )
        self.arrived.set()
        return web.Response(text="ok")

    async def wait(self, path: str, count: int = 1, within: float = 30.0) -> list[dict[str, Any]]:
        with anyio.fail_after(within):
            while len(self.got.get(path, [])) < count:
                self.arrived = anyio.Event()
                await self.arrived.wait()
        return self.got[path]


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    r = Receivers()
    app = web.Application()
    app.router.add_route("*", "/{path}", r.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    r.port = runner.addresses[0][1]
    yield r
    await runner.cleanup()


def alerter(name: str, kind: str, url: str, **extra: Any) -> str:
    lines = [f'[[alerter]]\nname = "{name}"\n[alerter.config]\nenabled = true']
    lines.append(
        f"endpoint = {{ type = {toml_value(kind)}, params = {{ url = {toml_value(url)} }} }}"
    )
    for key, value in extra.items():
        lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines)


def resources(core: Core, r: Receivers, good: str, broken: str) -> str:
    now = dt.datetime.now(dt.UTC)
    window = {  # holds now, whatever the time: from a minute ago, for an hour
        "name": "now",
        "hour": (now - dt.timedelta(minutes=1)).hour,
        "minute": (now - dt.timedelta(minutes=1)).minute,
        "duration_minutes": 60,
        "timezone": "UTC",
    }
    return (
        "\n\n".join(
            [
                '[[server]]\nname = "manager"\n[server.config]\npublic_key = '
                + toml_value(core.periphery.keys.public.openssh_line()),
                # the Custom URL comes from a secret variable: only the sync's file holds its value
                '[[variable]]\nname = "HOOK"\nvalue = '
                + toml_value(r.url("custom"))
                + "\nis_secret = true",
                f'[[stack]]\nname = "{good}"\ndeploy = true\n[stack.config]\nserver = "manager"\n'
                f"file_contents = '''\n{GOOD}'''\n[stack.config.health]\ntimeout = 60",
                f'[[stack]]\nname = "{broken}"\ndeploy = true\n[stack.config]\nserver = "manager"\n'
                f"file_contents = '''\n{GOOD}'''\n"
                'pre_deploy = { command = "echo no; exit 3" }',
                alerter("custom", "Custom", "[[HOOK]]"),
                alerter("ntfy", "Ntfy", r.url("ntfy"), alert_types=["StackDeployFailed"]),
                alerter(
                    "discord",
                    "Discord",
                    r.url("discord"),
                    resources=[{"type": "Server", "id": "manager"}],
                ),
                alerter(
                    "slack",
                    "Slack",
                    r.url("slack"),
                    alert_types=["StackStateChange", "StackDeployFailed"],
                    except_resources=[{"type": "Stack", "id": broken}],
                ),
                alerter("held", "Custom", r.url("held"), maintenance_windows=[window]),
                alerter("hang", "Custom", r.url("hang"), alert_types=["StackDeployFailed"]),
            ]
        )
        + "\n"
    )


def json_of(request: dict[str, Any]) -> Any:
    return json.loads(request["body"])


@pytest.mark.parametrize(
    "core",
    [
        {
            "drift_grace": 1,
            "agent_lost_grace": 1,
            "alert_timeout": 1,
            "alert_retries": 1,
            "alert_backoff": 0.2,
        }
    ],
    indirect=True,
)
async def test_each_endpoint_gets_komodos_request_through_its_filters(
    docker_env,
    core: Core,
    receivers: Receivers,  # type: ignore[no-untyped-def]
) -> None:
    good, broken = docker_env.name("good"), docker_env.name("broken")
    core.resources.write_text(resources(core, receivers, good, broken))
    async with watch(core.url, core.token) as w:
        applied = await core.sync()
        started = time.monotonic()
        run = await core.wait_run(applied["run"], within=120)
        elapsed = time.monotonic() - started
        statuses = {d["stack"]: d["status"] for d in run["deploys"]}
        assert statuses == {good: "healthy", broken: "failed"}, run

        # Custom: the alert as Komodo serialises it, to the URL from the secret variable
        (custom,) = await receivers.wait("custom")
        assert custom["method"] == "POST"
        assert custom["headers"]["Content-Type"] == "application/json"
        sent = json_of(custom)
        assert sent["level"] == "CRITICAL" and sent["resolved"] is True
        assert sent["target"] == {"type": "Stack", "id": broken}
        assert sent["data"]["type"] == "StackDeployFailed"
        assert sent["data"]["data"]["server_name"] == "manager"
        assert sent["data"]["data"]["step"] == "pre_deploy"
        assert set(sent) == {"ts", "resolved", "level", "target", "data", "resolved_ts"}

        # Ntfy (alert_types = StackDeployFailed): the text, a Title
        (ntfy,) = await receivers.wait("ntfy")
        assert ntfy["headers"]["Title"] == "stackward alert"
        text = ntfy["body"].decode()
        assert text.startswith(f"CRITICAL 🚨 | Stack {broken} failed to deploy ❌\nserver: manager")
        assert "step: pre_deploy" in text

        # the endpoint that never answers: tried 1 + alert_retries times, alert_timeout each,
        # and the deploys did not wait for it
        failed = await w.wait(
            lambda e: e["kind"] == "alert.failed" and e["data"]["alerter"] == "hang",
            what="alert.failed hang",
        )
        assert failed["data"]["attempts"] == 2 and "no answer in 1s" in failed["data"]["error"]
        assert failed["data"]["seconds"] >= 2.0
        assert len(receivers.hung) == 2
        assert elapsed < 60, elapsed
        raised = [e for e in w.of("alert.raised") if e["data"]["type"] == "StackDeployFailed"]
        assert sorted(raised[0]["data"]["alerters"]) == ["custom", "hang", "ntfy"]
        # held: in its maintenance window; slack: the stack is in its except_resources;
        # discord: only the server
        assert not receivers.got.get("held") and not receivers.got.get("slack")
        assert not receivers.got.get("discord")

        # The good stack's container is killed by hand: a state change after drift_grace
        (container,) = docker(
            "ps", "-q", "--filter", f"label=com.docker.compose.project={good}"
        ).split()
        docker("kill", container)
        (slack,) = await receivers.wait("slack", within=60)
        assert slack["headers"]["Content-Type"] == "application/json"
        body = json_of(slack)
        assert body["text"] == f"🥞 Stack *{good}* is now Down ⬇️" or body["text"] == (
            f"🥞 Stack *{good}* is now unhealthy"
        ), body
        assert [b["type"] for b in body["blocks"]] == ["header", "section"]
        assert body["blocks"][0]["text"]["type"] == "plain_text"
        assert body["blocks"][1]["text"]["type"] == "mrkdwn"
        assert "server: *manager*" in body["blocks"][1]["text"]["text"]

        # The agent goes away: after agent_lost_grace, ServerUnreachable to discord (its
        # resources = the server); back: the same, OK
        await anyio.to_thread.run_sync(core.periphery.stop)
        (lost,) = await receivers.wait("discord", within=30)
        assert json_of(lost)["content"].startswith(
            "CRITICAL 🚨 | **manager** is **unreachable** ❌"
        )
        await anyio.to_thread.run_sync(core.periphery.start_and_wait)
        back = (await receivers.wait("discord", count=2, within=30))[1]
        assert json_of(back) == {"content": "OK ✅ | **manager** is now **connected**"}

    # every alert is an event; no URL (webhooks carry tokens) is in any of them
    kinds = {e["kind"] for e in w.events}
    assert {"alert.raised", "alert.sent", "alert.failed"} <= kinds
    text_of_events = json.dumps(w.events)
    assert receivers.url("custom") not in text_of_events
    assert f"127.0.0.1:{receivers.port}" not in text_of_events
