"""The deploy commands over a real channel, on a real periphery process and the real engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core.pool import PeripheryPool, PoolSettings, ServerEndpoint
from protocol.messages import (
    Checkout,
    CheckoutReport,
    ComposeDown,
    ComposeUp,
    DeployMode,
    ErrorCode,
    Fence,
    HealthGateReport,
    PreDeploy,
    SwarmDeploy,
    SwarmRemove,
    WaitHealthy,
)
from protocol.transport import ChannelSettings, CoreChannel
from tests.support.processes import KeyPair

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

COMPOSE = """
services:
  web:
    image: {image}
    init: true
    command: ["sh", "-c", "echo $$GREETING > /www/greeting; exec httpd -f -p 8080 -h /www"]
    environment:
      GREETING: ${{GREETING}}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/greeting"]
      interval: 250ms
      retries: 20
"""

STACK = """
version: "3.8"
services:
  web:
    image: {image}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    environment:
      GREETING: ${{GREETING}}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 250ms
      retries: 20
"""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


def make_repo(tmp_path: Path, files: dict[str, str]) -> tuple[str, str]:
    work, bare = tmp_path / "work", tmp_path / "origin.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    for name, content in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "c", cwd=work)
    git("push", "-q", f"file://{bare}", "main", cwd=work)
    return f"file://{bare}", git("rev-parse", "HEAD", cwd=work)


async def ok(channel: CoreChannel, command: object) -> tuple[object, bytes]:
    result, chunks = await channel.request(command)  # type: ignore[arg-type]
    text = b"".join(bytes(c.data) for c in chunks)
    assert result.error is None and result.exit_code == 0, (result, text.decode())
    return result.value, text


async def test_compose_and_swarm_deploys_through_the_channel(
    core_keys: KeyPair, periphery_factory, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url, sha = make_repo(
        tmp_path,
        {
            "compose/web/compose.yaml": COMPOSE.format(image=docker_env.image),
            "swarm/web/stack.yaml": STACK.format(image=docker_env.image),
            "scripts/check.sh": 'grep -q GREETING=hello .env && echo "env file ok"\n',
        },
    )
    periphery = periphery_factory.start()
    project, stack = docker_env.name("cmp"), docker_env.name("swm")
    env_file = "GREETING=hello\n"
    settings = PoolSettings(channel=ChannelSettings(heartbeat_interval=2.0))
    async with PeripheryPool(core_keys.key, settings) as pool:
        pool.set_servers([ServerEndpoint("p1", periphery.keys.public, periphery.url)])
        channel = await pool.channel("p1")

        report, text = await ok(
            channel,
            Checkout(
                repo_url=url,
                commit=sha,
                target=project,
                fence=Fence(project, 2),
                run_directory="compose/web",
                env_file_path=".env",
                env_file=env_file,
                required_files=["compose.yaml"],
            ),
        )
        assert isinstance(report, CheckoutReport) and report.commit == sha
        assert report.env_file == ".env"
        # Komodo runs it in run_directory joined with path
        _, text = await ok(
            channel,
            PreDeploy(
                target=project,
                command="sh ../../scripts/check.sh",
                run_directory="compose/web",
            ),
        )
        assert b"env file ok" in text
        await ok(
            channel,
            ComposeUp(
                project=project,
                target=project,
                run_directory="compose/web",
                env_file_path=report.env_file,
                auto_pull=False,
            ),
        )
        report, _ = await ok(
            channel, WaitHealthy(mode=DeployMode.COMPOSE, name=project, timeout=60)
        )
        assert isinstance(report, HealthGateReport) and report.services
        container = docker_env.docker(
            "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"
        )
        greeting = docker_env.read_file(container, "/www/greeting")
        assert greeting == "hello"

        # A late command from an older lock holder is refused before it runs.
        stale, _ = await channel.request(ComposeDown(project=project, fence=Fence(project, 1)))
        assert stale.error is not None and stale.error.code is ErrorCode.STALE_FENCE
        assert docker_env.docker(
            "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"
        )

        await ok(channel, ComposeDown(project=project, fence=Fence(project, 3)))

        report, _ = await ok(
            channel,
            Checkout(
                repo_url=url,
                commit=sha,
                target=stack,
                run_directory="swarm/web",
                env_file_path=".env",
                env_file=env_file,
            ),
        )
        assert isinstance(report, CheckoutReport)
        await ok(
            channel,
            SwarmDeploy(
                stack=stack,
                target=stack,
                run_directory="swarm/web",
                files=["stack.yaml"],
                env_file_path=report.env_file,
            ),
        )
        await ok(channel, WaitHealthy(mode=DeployMode.SWARM, name=stack, timeout=90))
        await ok(channel, SwarmRemove(stack=stack))


async def test_escaping_paths_are_refused_before_anything_runs(
    core_keys: KeyPair, periphery_factory, docker_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url, sha = make_repo(tmp_path, {"compose.yaml": COMPOSE.format(image=docker_env.image)})
    periphery = periphery_factory.start()
    project = docker_env.name("esc")
    async with PeripheryPool(core_keys.key) as pool:
        pool.set_servers([ServerEndpoint("p1", periphery.keys.public, periphery.url)])
        channel = await pool.channel("p1")
        await ok(channel, Checkout(repo_url=url, commit=sha, target=project))
        result, _ = await channel.request(
            ComposeUp(project=project, target=project, run_directory="../../etc")
        )
        assert result.error is not None and result.error.code is ErrorCode.FORBIDDEN_PATH
        for command in (
            ComposeUp(project=project, target=project, env_files=["../../../../etc/passwd"]),
            PreDeploy(target=project, command="true", path="../../.."),
            Checkout(
                repo_url=url,
                commit=sha,
                target=project,
                env_file_path="../../x.env",
                env_file="A=1\n",
            ),
        ):
            result, _ = await channel.request(command)
            assert result.error is not None, command
            assert result.error.code is ErrorCode.FORBIDDEN_PATH, result.error
        assert not (periphery.workdir / "x.env").exists()
        result, _ = await channel.request(Checkout(repo_url=url, commit=sha, target="../escape"))
        assert result.error is not None and result.error.code is ErrorCode.BAD_REQUEST
    assert not docker_env.docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"
    )


async def test_a_repo_clone_is_kept_at_its_path_and_moved_to_each_commit(
    core_keys: KeyPair, periphery_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from protocol.messages import RepoSync

    (tmp_path / "a").mkdir()
    url, first = make_repo(tmp_path / "a", {"scripts/check.sh": "echo one\n"})
    work = tmp_path / "a" / "work"
    (work / "scripts" / "check.sh").write_text("echo two\n")
    git("commit", "-q", "-am", "two", cwd=work)
    git("push", "-q", url, "main", cwd=work)
    second = git("rev-parse", "HEAD", cwd=work)
    clone = tmp_path / "host" / "repos" / "lab"  # an absolute path, as a resource file gives
    periphery = periphery_factory.start()
    async with PeripheryPool(core_keys.key) as pool:
        pool.set_servers([ServerEndpoint("p1", periphery.keys.public, periphery.url)])
        channel = await pool.channel("p1")
        await ok(channel, RepoSync(url=url, commit=first, path=str(clone)))
        assert (clone / "scripts" / "check.sh").read_text() == "echo one\n"
        await ok(channel, RepoSync(url=url, commit=second, path=str(clone)))
        assert (clone / "scripts" / "check.sh").read_text() == "echo two\n"
        # A directory that is not a clone is never overwritten; '..' and '/' are refused.
        other = tmp_path / "host" / "data"
        other.mkdir()
        (other / "keep.txt").write_text("mine")
        for path in (str(other), "../escape", "/"):
            result, _ = await channel.request(RepoSync(url=url, commit=second, path=path))
            assert result.error is not None and result.error.code is ErrorCode.FORBIDDEN_PATH
        assert (other / "keep.txt").read_text() == "mine"


async def test_a_clone_of_another_repository_at_the_path_is_refused_untouched(
    core_keys: KeyPair, periphery_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """RepoSync's docstring kept: a clone whose origin is another URL is not reset to this one
    (its local changes would be lost); the error says what is there and what to do."""
    from protocol.messages import RepoSync

    (tmp_path / "mine").mkdir()
    (tmp_path / "theirs").mkdir()
    url, sha = make_repo(tmp_path / "mine", {"a.txt": "mine\n"})
    other_url, _ = make_repo(tmp_path / "theirs", {"b.txt": "theirs\n"})
    clone = tmp_path / "host" / "clone"
    git("clone", "-q", "-b", "main", other_url, str(clone), cwd=tmp_path)
    (clone / "b.txt").write_text("local change\n")
    (clone / "untracked.txt").write_text("keep me\n")
    head = git("rev-parse", "HEAD", cwd=clone)
    periphery = periphery_factory.start()
    async with PeripheryPool(core_keys.key) as pool:
        pool.set_servers([ServerEndpoint("p1", periphery.keys.public, periphery.url)])
        channel = await pool.channel("p1")
        result, _ = await channel.request(RepoSync(url=url, commit=sha, path=str(clone)))
        assert result.error is not None and result.error.code is ErrorCode.FORBIDDEN_PATH
        assert result.error.message == (
            f"{clone} is a clone of {other_url}, not of {url}: not touching it (move it"
            " away, or give the [[repo]] another path)"
        )
        assert git("rev-parse", "HEAD", cwd=clone) == head
        assert git("remote", "get-url", "origin", cwd=clone) == other_url
        assert (clone / "b.txt").read_text() == "local change\n"
        assert (clone / "untracked.txt").read_text() == "keep me\n"
        # the same repository written another way (a trailing .git or /) is the same clone
        mine = tmp_path / "host" / "mine"
        await ok(channel, RepoSync(url=url, commit=sha, path=str(mine)))
        await ok(channel, RepoSync(url=url + "/", commit=sha, path=str(mine)))
        assert (mine / "a.txt").read_text() == "mine\n"
