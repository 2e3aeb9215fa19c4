"""Compose projects on the real engine: up (with pull), health gate, failures, down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from periphery.exceptions import HealthGateFailed, StackDeployFailed
from periphery.ops.compose import compose_down, compose_up
from periphery.ops.dockercli import compose_command
from periphery.ops.envfile import write_env_file
from periphery.ops.health import wait_compose_healthy
from periphery.ops.verdict import Rules, State
from periphery.paths import stack_paths
from protocol.messages import StackSource

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

FAST = Rules(max_failures=2, min_running=0.5, stall_grace=1.0)

HEALTHY = """
version: "3.8"
services:
  web:
    image: {image}
    init: true
    command: ["sh", "-c", "echo greeting=$$GREETING; exec httpd -f -p 8080 -h /www"]
    environment:
      GREETING: ${{GREETING}}
      QUOTED: ${{QUOTED}}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 250ms
      timeout: 2s
      retries: 3
  plain:
    image: {image}
    init: true
    command: ["sleep", "600"]
  setup:
    image: {image}
    command: ["sh", "-c", "echo one-shot done"]
"""

UNHEALTHY = """
version: "3.8"
services:
  api:
    image: {image}
    init: true
    command: ["sh", "-c", "echo 'api: database refused connection'; exec sleep 600"]
    healthcheck:
      test: ["CMD", "false"]
      interval: 250ms
      timeout: 1s
      retries: 1
"""

EXITS = """
version: "3.8"
services:
  worker:
    image: {image}
    command: ["sh", "-c", "echo 'worker: config missing'; exit 7"]
"""

MISSING_IMAGE = """
version: "3.8"
services:
  app:
    image: stackward-test/not-here:1
"""


def write(tmp_path: Path, text: str, image: str) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "compose.yaml").write_text(text.format(image=image))
    return run_dir


async def up(
    run_dir: Path, project: str, recorder, *, env: str = "", auto_pull: bool = False
) -> None:
    """As a files-on-host stack in ``run_dir``, its env file written first (``write_stack``)."""
    env_file = ".env" if write_env_file(run_dir / ".env", env) else ""
    paths = stack_paths(run_dir.parent, project, StackSource.FILES_ON_HOST, str(run_dir))
    await compose_up(
        paths,
        project,
        project,
        ["compose.yaml"],
        env_file,
        [],
        [],
        {},
        recorder,
        auto_pull=auto_pull,
        destroy_before_deploy=False,
    )


def containers(docker_env, project: str) -> list[str]:
    return docker_env.docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"
    ).split()


async def test_compose_up_gate_and_down(tmp_path: Path, docker_env, recorder) -> None:
    project = docker_env.name("ok")
    run_dir = write(tmp_path, HEALTHY, docker_env.image)
    env = 'GREETING=hello compose\nQUOTED="it\'s here"\n'
    started = time.monotonic()
    await up(run_dir, project, recorder, env=env, auto_pull=True)
    verdicts = await wait_compose_healthy(
        project, ignore_services=["setup"], time_limit=30, rules=FAST, emit=recorder
    )
    assert {v.service: v.state for v in verdicts} == {"web": State.READY, "plain": State.READY}
    assert time.monotonic() - started < 20
    text = recorder.text()
    # offline: pulling fails, the image is here, so it is a warning
    assert "warning: compose pull failed; using the images present locally" in text
    assert (run_dir / ".env").read_text() == env
    assert "--env-file .env" in text
    web = docker_env.docker(
        "ps",
        "-q",
        "--filter",
        f"label=com.docker.compose.project={project}",
        "--filter",
        "label=com.docker.compose.service=web",
    )
    inspected = docker_env.docker("inspect", "--format", "{{json .Config.Env}}", web)
    assert "GREETING=hello compose" in inspected and "QUOTED=it's here" in inspected

    await compose_down(project, recorder)
    assert containers(docker_env, project) == []


async def test_unhealthy_container_fails_with_reason(tmp_path: Path, docker_env, recorder) -> None:
    project = docker_env.name("sick")
    run_dir = write(tmp_path, UNHEALTHY, docker_env.image)
    await up(run_dir, project, recorder)
    started = time.monotonic()
    with pytest.raises(HealthGateFailed) as info:
        await wait_compose_healthy(project, time_limit=15, rules=FAST)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "api:" in message and "unhealthy" in message
    assert "database refused connection" in message


async def test_exited_container_fails_with_exit_code(tmp_path: Path, docker_env, recorder) -> None:
    project = docker_env.name("exit")
    run_dir = write(tmp_path, EXITS, docker_env.image)
    await up(run_dir, project, recorder)
    with pytest.raises(HealthGateFailed, match="exit code 7") as info:
        await wait_compose_healthy(project, time_limit=15, rules=FAST)
    assert "worker: config missing" in str(info.value)
    # without the files: removal by the project label
    await compose_down(project, recorder)
    assert containers(docker_env, project) == []


async def test_pull_of_a_missing_image_fails(tmp_path: Path, docker_env, recorder) -> None:
    project = docker_env.name("pull")
    run_dir = write(tmp_path, MISSING_IMAGE, docker_env.image)
    with pytest.raises(StackDeployFailed, match="stackward-test/not-here:1"):
        await up(run_dir, project, recorder, auto_pull=True)
    assert containers(docker_env, project) == []


async def test_compose_command_is_detected(docker_env) -> None:
    command = await compose_command()
    assert command in (("docker", "compose"), ("docker-compose",))
