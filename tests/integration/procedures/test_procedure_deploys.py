"""Procedures deploying and driving real stacks: an in-process core, a real periphery process,
the real engine. Komodo's behaviour matched, per execution:

- BatchDeployStackIfChanged: the pattern selects as ``list_full_for_user_using_pattern``
  (bin/core/src/resource/mod.rs: wildcards and ``\\regex\\``), each stack deployed when it
  changed (``DeployStackIfChanged`` in bin/core/src/api/execute/stack.rs; here: when the
  reconciler says it is not converged), even with ``deploy = false`` (one corpus file deploys
  only through procedures);
- StopStack, StartStack, RestartStack, DestroyStack: ``execute_compose`` in
  bin/core/src/stack/execute.rs (``docker compose -p P stop|start|restart|down``); on a Swarm
  stack DestroyStack is ``docker stack rm`` and StopStack is refused ("Compose executions ...
  should not be called for Stack in Swarm Mode").
"""

from __future__ import annotations

import anyio
import pytest

from tests.engine.fixtures import docker
from tests.integration.deploys.test_core_deploys import (  # noqa: F401 (the fixture)
    Core,
    core,
    resource_file,
    stack_files,
)
from tests.support.homelab import Repo

pytestmark = [pytest.mark.docker, pytest.mark.anyio]


def states(project: str) -> list[str]:
    out = docker(
        "ps",
        "-a",
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--format",
        "{{.State}}",
    )
    return sorted(out.split())


def procedures(p: str) -> str:
    def stage(name: str, *executions: str) -> str:
        return (
            f'[[procedure.config.stage]]\nname = "{name}"\nexecutions = [\n'
            + "".join(f"  {e},\n" for e in executions)
            + "]\n"
        )

    def ex(kind: str, **params: str) -> str:
        inner = ", ".join(f'execution.params.{k} = "{v}"' for k, v in params.items())
        return f'{{ execution.type = "{kind}", {inner} }}'

    pattern = f"{p}-a , \\\\^{p}-b$\\\\"  # a wildcard and a regular expression
    return "\n".join(
        [
            '[[procedure]]\nname = "roll"',
            stage("Deploy changed", ex("BatchDeployStackIfChanged", pattern=pattern)),
            stage("Stop", ex("StopStack", stack=f"{p}-a")),
            stage("Start", ex("StartStack", stack=f"{p}-a"), ex("RestartStack", stack=f"{p}-b")),
            '[[procedure]]\nname = "again"',
            stage("Check", ex("DeployStackIfChanged", stack=f"{p}-a")),
            '[[procedure]]\nname = "swarmy"',
            stage("Deploy", ex("DeployStack", stack=f"{p}-sw")),
            stage("Stop", ex("StopStack", stack=f"{p}-sw")),
            '[[procedure]]\nname = "teardown"',
            stage("Down", ex("DestroyStack", stack=f"{p}-a"), ex("DestroyStack", stack=f"{p}-sw")),
        ]
    )


async def run(client: Core, name: str) -> dict[str, object]:
    run_id = await client.run_procedure(name)
    return await client.wait_procedure(run_id, within=120)


async def test_procedures_deploy_and_drive_stacks(core: Core, docker_env, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    p = docker_env.prefix
    stacks = [
        {"name": "a", "tier": "application", "mode": "compose"},
        {"name": "b", "tier": "application", "mode": "compose"},
        {"name": "sw", "tier": "application", "mode": "swarm"},
    ]
    repo = Repo(tmp_path / "repo")
    repo.commit(stack_files(stacks))
    text = resource_file(p, repo, core.periphery.keys.public.openssh_line(), stacks)
    text = text.replace("deploy = true", "deploy = false")  # only procedures deploy them
    core.resources.write_text(text + "\n" + procedures(p))
    await core.sync("local")
    assert states(f"{p}-a") == [] and states(f"{p}-b") == []  # deploy = false: nothing yet

    roll = await run(core, "roll")
    assert roll["status"] == "succeeded", (roll["message"], [s for s in roll["steps"]])
    steps = [(s["stage_name"], s["execution"], s["status"]) for s in roll["steps"]]  # type: ignore[union-attr]
    assert sorted(steps[:2]) == [
        ("Deploy changed", f"DeployStackIfChanged {p}-a", "ok"),
        ("Deploy changed", f"DeployStackIfChanged {p}-b", "ok"),
    ]  # the swarm stack is not selected by the pattern
    text_out = "\n".join(str(line["text"]) for line in roll["output"])  # type: ignore[union-attr]
    assert f"{p}-a: never deployed" in text_out and f"{p}-a: healthy" in text_out
    assert states(f"{p}-a") == ["running"] and states(f"{p}-b") == ["running"]
    last = {s["name"]: s["last_deploy"] for s in await core.stacks()}
    assert last[f"{p}-a"]["status"] == "healthy"
    assert (await core.run(last[f"{p}-a"]["run"]))["source"] == "procedure"

    again = await run(core, "again")
    assert again["status"] == "succeeded"
    assert any("no changes (converged)" in str(line["text"]) for line in again["output"])  # type: ignore[union-attr]
    last2 = {s["name"]: s["last_deploy"] for s in await core.stacks()}
    assert last2[f"{p}-a"]["id"] == last[f"{p}-a"]["id"]  # nothing deployed again

    swarmy = await run(core, "swarmy")
    assert swarmy["status"] == "failed"
    assert "should not be called for Stack in Swarm Mode" in str(swarmy["message"])
    assert docker("stack", "ls", "--format", "{{.Name}}").split().count(f"{p}-sw") == 1

    down = await run(core, "teardown")
    assert down["status"] == "succeeded", down
    assert states(f"{p}-a") == []
    for _ in range(120):
        if f"{p}-sw" not in docker("stack", "ls", "--format", "{{.Name}}").split():
            break
        await anyio.sleep(0.25)
    else:
        raise AssertionError("the swarm stack is still there 30 s after DestroyStack")
    assert states(f"{p}-b") == ["running"]
