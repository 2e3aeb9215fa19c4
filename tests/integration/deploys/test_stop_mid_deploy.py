"""The core stops cleanly (its task group cancelled) while a deploy runs."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.integration.deploys.test_core_deploys import Core, core, resource_file, stack_files
from tests.support.homelab import Repo

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

__all__ = ["core"]


async def test_the_core_stops_while_a_deploy_runs(core: Core, docker_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = docker_env.prefix
    stacks = [{"name": "slow", "tier": "infrastructure", "mode": "compose", "pre": "sleep 30"}]
    repo = Repo(tmp_path / "repo")
    repo.commit(stack_files(stacks))
    core.resources.write_text(
        resource_file(p, repo, core.periphery.keys.public.openssh_line(), stacks)
    )
    applied = await core.sync()
    with anyio.fail_after(30):
        while True:
            status, run = await core.call("GET", f"/api/runs/{applied['run']}")
            if any(s["step"] == "pre_deploy" for d in run["deploys"] for s in d["steps"]):
                break
            await anyio.sleep(0.1)
    # The fixture's teardown now stops the core mid-deploy; it must not hang.
