"""Image updates end to end: a real core (in-process), a real periphery process, the real engine
and a real registry (Debian's docker-registry). Images are pushed, then re-tagged and pushed
again; the core notices, says so per service, and auto_update redeploys what Komodo would.

Komodo's behaviour matched (moghtech/komodo):
- ``bin/core/src/api/write/stack.rs``, ``check_stack_for_update_inner``: an update is the
  registry's digest of the tag missing from the digests the service runs
  (``ImageDigest::update_available``, ``client/core/rs/src/entities/mod.rs``); with
  ``auto_update``, ``DeployStack { services }`` with only the services that have one, all of
  them with ``auto_update_all_services``; ``auto_update_skip_services`` are skipped by the global
  check only ("Manual checks still include all services"); without ``auto_update`` the update is
  announced (``StackImageUpdateAvailable``) and nothing is deployed.
- ``bin/periphery/src/api/compose.rs``: ``pull -- SERVICES`` then ``up -d -- SERVICES``.
- ``bin/core/src/monitor/resources.rs``: Compose services compare their containers' images'
  ``RepoDigests``, Swarm services the digest pinned in their spec.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.engine.fixtures import docker
from tests.integration.deploys.test_core_deploys import Core, core
from tests.integration.updates.conftest import Images
from tests.support.events import watch
from tests.support.processes import stackward_argv, toml_value

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

__all__ = ["core"]

SERVICE = """  {name}:
    image: {image}
    init: true
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 250ms
      timeout: 2s
      retries: 8
"""


def compose_text(services: dict[str, str], swarm: bool = False) -> str:
    head = 'version: "3.8"\n' if swarm else ""
    body = "".join(SERVICE.format(name=n, image=i) for n, i in services.items())
    return f"{head}services:\n{body}"


def resources(core: Core, stacks: list[dict[str, Any]], extra: str = "") -> str:
    out = [
        '[[server]]\nname = "manager"\n[server.config]\npublic_key = '
        + toml_value(core.periphery.keys.public.openssh_line()),
        '[[swarm]]\nname = "lab"\n[swarm.config]\nservers = ["manager"]',
    ]
    for s in stacks:
        lines = [f'[[stack]]\nname = "{s["name"]}"\ndeploy = true\n[stack.config]']
        lines.append('swarm = "lab"' if s.get("swarm") else 'server = "manager"')
        lines.append("file_contents = '''\n" + s["compose"] + "'''")
        for key in ("poll_for_updates", "auto_update", "auto_update_all_services"):
            if s.get(key):
                lines.append(f"{key} = true")
        if s.get("skip"):
            lines.append("auto_update_skip_services = " + toml_value(s["skip"]))
        lines.append("[stack.config.health]\ntimeout = 60")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n" + extra


def compose_container(project: str, service: str) -> dict[str, Any]:
    ids = docker(
        "ps",
        "-q",
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--filter",
        f"label=com.docker.compose.service={service}",
    ).split()
    assert len(ids) == 1, ids
    data: list[dict[str, Any]] = json.loads(docker("inspect", ids[0]))
    return data[0]


def repo_digests(image_id: str) -> list[str]:
    return [
        d.split("@", 1)[1]
        for d in json.loads(docker("image", "inspect", image_id))[0]["RepoDigests"]
    ]


def by_service(check: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["service"]: s for s in check["services"]}


@pytest.mark.parametrize("core", [{"image_poll_interval": 1}], indirect=True)
async def test_compose_auto_update_redeploys_only_the_service_with_a_newer_image(
    docker_env,
    core: Core,
    images: Images,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    name = docker_env.name("upd")
    web1 = images.push("app", "1")
    side1 = images.push("side", "1")
    stack = {
        "name": name,
        "compose": compose_text({"web": images.ref("app"), "side": images.ref("side")}),
        "poll_for_updates": True,
        "auto_update": True,
        "skip": ["side"],
    }
    core.resources.write_text(resources(core, [stack]))
    async with watch(core.url, core.token) as w:
        applied = await core.sync()
        assert (await core.wait_run(applied["run"], within=120))["status"] == "succeeded"
        before_web = compose_container(name, "web")
        before_side = compose_container(name, "side")
        assert web1 in repo_digests(before_web["Image"])

        # The interval (image_poll_interval = 1) checks: the images are current.
        checked = await w.wait(
            lambda e: (
                e["kind"] == "update.checked"
                and e["data"]["stack"] == name
                and bool(e["data"]["services"])
            ),
            what="update.checked",
            within=30,
        )
        services = by_service(checked["data"])
        assert services["web"]["latest"] == web1 and not services["web"]["update_available"]
        assert services["side"]["skipped"] == "auto_update_skip_services"

        # Re-tagged and pushed again: both tags move.
        web2 = images.push("app", "2")
        side2 = images.push("side", "2")
        assert web2 != web1 and side2 != side1
        available = await w.wait(
            lambda e: e["kind"] == "update.available" and e["data"]["stack"] == name,
            what="update.available",
            within=30,
        )
        assert available["data"]["service"] == "web"
        assert available["data"]["latest"] == web2 and available["data"]["current"] == [web1]
        assert available["data"]["redeploy"] is True
        redeploy = await w.wait(
            lambda e: e["kind"] == "update.redeploy" and e["data"]["stack"] == name,
            what="update.redeploy",
            within=30,
        )
        assert redeploy["data"]["services"] == ["web"]
        run = await core.wait_run(redeploy["data"]["run"], within=120)
        assert run["status"] == "succeeded", run
        (deploy,) = run["deploys"]
        status, log = await core.call("GET", f"/api/deploys/{deploy['id']}/log")
        text = "".join(line["text"] for line in log["lines"])
        assert " pull -- web" in text and " up -d -- web" in text, text

        # web runs the new image in a new container; side was not touched (skipped: its newer
        # image is not pulled, its container is the same one).
        after_web = compose_container(name, "web")
        after_side = compose_container(name, "side")
        assert after_web["Id"] != before_web["Id"]
        assert web2 in repo_digests(after_web["Image"])
        assert after_side["Id"] == before_side["Id"]
        assert after_side["Image"] == before_side["Image"]

        # The next interval check finds web current; the one redeploy is all there was.
        await w.wait(
            lambda e: (
                e["kind"] == "update.checked"
                and e["id"] > redeploy["id"]
                and e["data"]["stack"] == name
                and by_service(e["data"])["web"]["current"] == [web2]
            ),
            what="update.checked after the update",
            within=60,
        )
        await anyio.sleep(1.5)
        assert len(w.of("update.redeploy", f"stack:{name}")) == 1

    # A check of the named stack includes the skipped service (Komodo's manual check), and
    # with skip_auto_update deploys nothing.
    (check,) = await core.check_updates([name], skip_auto_update=True)
    services = by_service(check)
    assert services["side"]["update_available"] and services["side"]["latest"] == side2
    assert services["side"]["current"] == [side1]
    assert not services["web"]["update_available"]
    assert check["run"] is None


@pytest.mark.parametrize("core", [{"image_poll_interval": 0}], indirect=True)  # asked only
async def test_swarm_one_service_updated_and_poll_only_announces(
    docker_env,
    core: Core,
    images: Images,  # type: ignore[no-untyped-def]
) -> None:
    auto = docker_env.name("auto")
    poll = docker_env.name("poll")
    app1 = images.push("app", "1")
    images.push("side", "1")
    core.resources.write_text(
        resources(
            core,
            [
                {
                    "name": auto,
                    "swarm": True,
                    "compose": compose_text(
                        {"web": images.ref("app"), "side": images.ref("side")}, swarm=True
                    ),
                    "auto_update": True,
                },
                {
                    "name": poll,
                    "swarm": True,
                    "compose": compose_text({"web": images.ref("app")}, swarm=True),
                    "poll_for_updates": True,
                },
            ],
            # Komodo's default "Global Auto Update" procedure (bin/core/src/startup.rs)
            '\n[[procedure]]\nname = "global-auto-update"\n[[procedure.config.stage]]\n'
            'name = "Stage 1"\nexecutions = [{ execution.type = "GlobalAutoUpdate",'
            " execution.params = { skip_auto_update = false }, enabled = true }]\n",
        )
    )
    applied = await core.sync()
    assert (await core.wait_run(applied["run"], within=180))["status"] == "succeeded"
    side_before = docker_env.service_json(f"{auto}_side")
    web_spec = docker_env.service_json(f"{auto}_web")["Spec"]
    assert web_spec["TaskTemplate"]["ContainerSpec"]["Image"].endswith("@" + app1)

    checks = {c["stack"]: c for c in await core.check_updates()}
    assert not by_service(checks[auto])["web"]["update_available"]

    app2 = images.push("app", "2")  # the tag moves
    async with watch(core.url, core.token) as w:
        # a procedure's GlobalAutoUpdate (core/automation) runs the check
        done = await core.wait_procedure(await core.run_procedure("global-auto-update"), 120)
        assert done["status"] == "succeeded", done
        said = "\n".join(line["text"] for line in done["output"])
        assert f"Checked Stack {poll} ✅; newer images: web ({images.ref('app')})" in said, said
        assert f"Checked Stack {auto} ✅; newer images: web" in said, said
        assert "redeploying in run" in said, said
        checked = {
            stack: by_service(
                (
                    await w.wait(
                        lambda e, s=stack: (
                            e["kind"] == "update.checked"
                            and e["data"]["stack"] == s
                            and bool(e["data"]["services"])
                        ),
                        what=f"update.checked {stack}",
                    )
                )["data"]
            )
            for stack in (poll, auto)
        }
        # poll_for_updates alone: announced, not deployed
        assert checked[poll]["web"]["update_available"]
        announced = await w.wait(
            lambda e: e["kind"] == "update.available" and e["data"]["stack"] == poll,
            what="update.available (poll)",
        )
        assert announced["data"]["redeploy"] is False
        assert not [e for e in w.of("update.redeploy") if e["data"]["stack"] == poll]
        # auto_update: only the service with a newer image, by docker service update
        assert not checked[auto]["side"]["update_available"]
        redeploy = await w.wait(
            lambda e: e["kind"] == "update.redeploy" and e["data"]["stack"] == auto,
            what="update.redeploy",
        )
        assert redeploy["data"]["services"] == ["web"]
        checks = {auto: {"run": redeploy["data"]["run"]}}
        run = await core.wait_run(checks[auto]["run"], within=120)
        assert run["status"] == "succeeded", run
        (deploy,) = run["deploys"]
        status, log = await core.call("GET", f"/api/deploys/{deploy['id']}/log")
        text = "".join(line["text"] for line in log["lines"])
        assert f"docker service update --detach --image {images.ref('app')} -- {auto}_web" in text
    web_spec = docker_env.service_json(f"{auto}_web")["Spec"]
    assert web_spec["TaskTemplate"]["ContainerSpec"]["Image"].endswith("@" + app2)
    side_after = docker_env.service_json(f"{auto}_side")
    assert side_after["Version"] == side_before["Version"]  # not touched
    # the stack file's reference is kept: a later stack deploy sees the same file
    assert web_spec["Labels"]["com.docker.stack.image"] == images.ref("app")

    # GET /api/stacks and `stackward status` show each service's image and its update
    listed = {s["name"]: s["images"] for s in await core.stacks()}
    assert listed[poll]["update_available"] is True
    assert [(s["service"], s["latest"]) for s in listed[poll]["services"]] == [("web", app2)]
    env = {**os.environ, "STACKWARD_URL": core.url, "STACKWARD_TOKEN": core.token, "NO_COLOR": "1"}
    listing = (await anyio.run_process(stackward_argv("status"), env=env, check=False)).stdout
    line = next(x for x in listing.decode().splitlines() if x.startswith(poll))
    assert "update: web" in line, listing.decode()
    one = (await anyio.run_process(stackward_argv("status", poll), env=env, check=False)).stdout
    assert f"newer image {app2[7:19]}" in one.decode(), one.decode()
    assert "image web" in one.decode() and images.ref("app") in one.decode()
