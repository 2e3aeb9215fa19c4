"""The deploy steps one after the other, as a channel command will chain them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from periphery.exceptions import ForbiddenPath, PreDeployFailed
from periphery.ops.commands import command_argv, run_command
from periphery.ops.compose import compose_up
from periphery.ops.health import wait_compose_healthy
from periphery.ops.verdict import Rules
from periphery.ops.write import write_stack
from periphery.paths import stack_paths
from protocol.messages import Checkout, StackSource

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
            "scripts/check.sh": 'test -d "$(dirname $0)/../stacks/web" && echo web dir ok\n',
        },
        {},
    )
    project = docker_env.name("flow")
    root = tmp_path / "root"
    report = await write_stack(
        root,
        Checkout(
            repo_url=url,
            commit=sha,
            target=project,
            run_directory="stacks/web",
            env_file_path=".env",
            env_file="DATA_DIR=/srv\n",
            required_files=["compose.yaml"],
        ),
        recorder,
    )
    assert report.commit == sha and report.env_file == ".env"
    paths = stack_paths(root, project, StackSource.GIT, "stacks/web")
    check = command_argv("sh ../../scripts/check.sh\ncat .env", shell_mode=False)
    assert check is not None
    await run_command(check, paths.command_directory("", "pre_deploy"), "pre_deploy", recorder)
    await compose_up(
        paths,
        project,
        project,
        ["compose.yaml"],
        report.env_file,
        [],
        [],
        {},
        recorder,
        auto_pull=False,
        destroy_before_deploy=False,
    )
    await wait_compose_healthy(project, time_limit=20, rules=Rules(min_running=0.5), emit=recorder)
    assert "web dir ok" in recorder.text() and "DATA_DIR=/srv" in recorder.text()

    failing = command_argv("test -d /nonexistent", shell_mode=False)
    assert failing is not None
    with pytest.raises(PreDeployFailed):
        await run_command(failing, paths.run_directory, "pre_deploy", recorder)


async def test_refused_repositories_run_nothing(tmp_path: Path, docker_env, recorder) -> None:
    url, sha = make_repo(
        tmp_path,
        {"stacks/web/compose.yaml": COMPOSE.format(image=docker_env.image)},
        {"stacks/web/data": "/var/lib"},
    )
    project = docker_env.name("evil")
    with pytest.raises(ForbiddenPath, match="stacks/web/data"):
        await write_stack(
            tmp_path / "root", Checkout(repo_url=url, commit=sha, target=project), recorder
        )
    assert list((tmp_path / "root" / project).iterdir()) == []
    assert (
        docker_env.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")
        == ""
    )
