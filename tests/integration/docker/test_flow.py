"""The deploy steps one after the other, as a channel command will chain them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from periphery.exceptions import ForbiddenPath, PreDeployFailed
from periphery.ops.checkout import checkout
from periphery.ops.compose import compose_up
from periphery.ops.health import wait_compose_healthy
from periphery.ops.paths import run_paths
from periphery.ops.predeploy import run_pre_deploy
from periphery.ops.verdict import Rules

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

COMPOSE = """
services:
  web:
    image: {image}
    init: true
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 250ms
      retries: 3
"""


def make_repo(tmp_path: Path, files: dict[str, str], links: dict[str, str]) -> tuple[str, str]:
    work, bare = tmp_path / "work", tmp_path / "origin.git"

    def git(*args: str, cwd: Path = work) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    for name, content in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content)
    for name, target in links.items():
        (work / name).symlink_to(target)
    git("add", "-A")
    git("commit", "-q", "-m", "c")
    git("push", "-q", f"file://{bare}", "main")
    return f"file://{bare}", git("rev-parse", "HEAD")


async def test_checkout_predeploy_up_gate(tmp_path: Path, docker_env, recorder) -> None:
    url, sha = make_repo(
        tmp_path,
        {
            "stacks/web/compose.yaml": COMPOSE.format(image=docker_env.image),
            "scripts/check.sh": 'test -d "$DATA_DIR" && echo data dir ok\n',
        },
        {},
    )
    project = docker_env.name("flow")
    tree = await checkout(tmp_path / "root", url, sha, project, recorder)
    paths = run_paths(tree, "stacks/web", [])
    env = {"DATA_DIR": str(tmp_path)}
    await run_pre_deploy(tree, "sh check.sh", "scripts", env, recorder, time_limit=10)
    await compose_up(project, paths.relative_files(), paths.run_directory, env, False, recorder)
    await wait_compose_healthy(project, time_limit=20, rules=Rules(min_running=0.5), emit=recorder)
    assert "data dir ok" in recorder.text()

    with pytest.raises(PreDeployFailed):
        await run_pre_deploy(tree, "sh check.sh", "scripts", {"DATA_DIR": "/nonexistent"}, recorder)


async def test_refused_repositories_run_nothing(tmp_path: Path, docker_env, recorder) -> None:
    url, sha = make_repo(
        tmp_path,
        {"stacks/web/compose.yaml": COMPOSE.format(image=docker_env.image)},
        {"stacks/web/data": "/var/lib"},
    )
    project = docker_env.name("evil")
    with pytest.raises(ForbiddenPath, match="stacks/web/data"):
        await checkout(tmp_path / "root", url, sha, project, recorder)
    assert not (tmp_path / "root" / project / "current").exists()
    assert (
        docker_env.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")
        == ""
    )
