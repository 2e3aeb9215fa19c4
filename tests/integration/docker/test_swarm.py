"""Swarm stacks on the real engine: deploy, health gate, failure reasons, removal."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from periphery.exceptions import HealthGateFailed, StackDeployFailed
from periphery.ops import dockercli
from periphery.ops.envfile import write_env_file
from periphery.ops.health import wait_swarm_healthy
from periphery.ops.swarm import swarm_deploy, swarm_remove
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
    command: ["sh", "-c", "echo serving $$GREETING; exec httpd -f -p 8080 -h /www"]
    init: true  # busybox as PID 1 ignores SIGTERM: every stop would take 10 s
    environment:
      GREETING: ${{GREETING}}
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 250ms
      timeout: 2s
      retries: 3
{job}  stuck:
    image: {image}
    command: ["sleep", "600"]
    init: true
    deploy:
      placement:
        constraints: [node.labels.stackward-never == yes]
"""

UNHEALTHY = """
version: "3.8"
services:
  web:
    image: {image}
    command: ["sh", "-c", "echo 'web: cannot open /data/db: no such file'; exec sleep 600"]
    init: true
    healthcheck:
      test: ["CMD", "false"]
      interval: 250ms
      timeout: 1s
      retries: 1
    deploy:
      restart_policy: {{delay: 100ms}}
"""

UNSCHEDULABLE = """
version: "3.8"
services:
  db:
    image: {image}
    command: ["sleep", "600"]
    init: true
    deploy:
      placement:
        constraints: [node.labels.stackward-never == yes]
"""

NO_IMAGE = """
version: "3.8"
services:
  app:
    image: stackward-test/does-not-exist:1
    deploy:
      restart_policy: {{delay: 100ms}}
"""


# A swarm job in a stack file: `docker stack deploy` reads it from CLI 23.0 (docker/cli#2907);
# Debian 12's 20.10 CLI stops at "Unknown mode: replicated-job".
JOB = """  init:
    image: {image}
    command: ["sh", "-c", "echo init done"]
    deploy:
      mode: replicated-job
"""


def write(tmp_path: Path, text: str, image: str, job: str = "") -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "stack.yml").write_text(text.format(image=image, job=job.format(image=image)))
    return run_dir


async def deploy(run_dir: Path, name: str, recorder, env: str = "") -> None:
    """As a files-on-host stack in ``run_dir``, its env file written first (``write_stack``)."""
    env_file = ".env" if write_env_file(run_dir / ".env", env) else ""
    paths = stack_paths(run_dir.parent, name, StackSource.FILES_ON_HOST, str(run_dir))
    await swarm_deploy(paths, name, ["stack.yml"], env_file, [], [], {}, recorder)


async def _cli_has_jobs() -> bool:
    return (await dockercli.probe()).has(dockercli.STACK_JOBS)


async def test_stack_deploys_and_passes_the_gate(tmp_path: Path, docker_env, recorder) -> None:
    name = docker_env.name("ok")
    jobs = await _cli_has_jobs()  # the job's gate is tested where the CLI can deploy one
    run_dir = write(tmp_path, HEALTHY, docker_env.image, JOB if jobs else "")
    started = time.monotonic()
    await deploy(run_dir, name, recorder, 'GREETING="hello from env"\n')
    verdicts = await wait_swarm_healthy(
        name, ignore_services=["stuck"], time_limit=30, rules=FAST, emit=recorder
    )
    elapsed = time.monotonic() - started
    assert {v.service: v.state for v in verdicts} == {
        f"{name}_web": State.READY,
        **({f"{name}_init": State.READY} if jobs else {}),
    }
    assert elapsed < 15
    text = recorder.text()
    assert f"Creating service {name}_web" in text
    assert "healthy after" in text
    spec = docker_env.service_json(f"{name}_web")["Spec"]
    env = spec["TaskTemplate"]["ContainerSpec"]["Env"]  # type: ignore[index]
    assert "GREETING=hello from env" in env

    # a redeploy of the same files is a no-op update and passes at once
    await deploy(run_dir, name, recorder, 'GREETING="hello from env"\n')
    await wait_swarm_healthy(name, ignore_services=["stuck"], time_limit=30, rules=FAST)

    await swarm_remove(name, recorder, time_limit=60)
    label = f"label=com.docker.stack.namespace={name}"
    assert docker_env.docker("service", "ls", "-q", "--filter", label) == ""
    assert docker_env.docker("network", "ls", "-q", "--filter", label) == ""
    assert docker_env.docker("ps", "-aq", "--filter", label) == ""  # job containers too


async def test_a_job_on_an_old_cli_is_refused_before_anything_runs(
    tmp_path: Path, docker_env, recorder
) -> None:
    """On a CLI without stack jobs (Debian 12's 20.10) the deploy fails at once, naming the
    service, the feature and the minimum, and creates nothing (20.10 itself would create the
    stack's network, then stop at "Unknown mode")."""
    if await _cli_has_jobs():
        pytest.skip(f"this docker CLI ({(await dockercli.probe()).cli_version}) deploys jobs")
    name = docker_env.name("job")
    run_dir = write(tmp_path, HEALTHY, docker_env.image, JOB)
    with pytest.raises(StackDeployFailed) as info:
        await deploy(run_dir, name, recorder)
    message = str(info.value)
    assert "service 'init' has deploy.mode replicated-job" in message
    assert "needs docker CLI 23.0 or newer" in message
    label = f"label=com.docker.stack.namespace={name}"
    assert docker_env.docker("network", "ls", "-q", "--filter", label) == ""
    assert docker_env.docker("service", "ls", "-q", "--filter", label) == ""


async def test_unhealthy_service_fails_with_reason_and_logs(
    tmp_path: Path, docker_env, recorder
) -> None:
    name = docker_env.name("sick")
    run_dir = write(tmp_path, UNHEALTHY, docker_env.image)
    await deploy(run_dir, name, recorder)
    started = time.monotonic()
    with pytest.raises(HealthGateFailed) as info:
        await wait_swarm_healthy(name, time_limit=20, rules=Rules(max_failures=1), emit=recorder)
    message = str(info.value)
    assert time.monotonic() - started < 20
    assert f"{name}_web" in message
    assert "unhealthy" in message or "non-zero exit" in message
    assert "cannot open /data/db" in message  # the last log lines


async def test_impossible_constraint_fails_with_the_task_error(
    tmp_path: Path, docker_env, recorder
) -> None:
    name = docker_env.name("placed")
    run_dir = write(tmp_path, UNSCHEDULABLE, docker_env.image)
    await deploy(run_dir, name, recorder)
    with pytest.raises(HealthGateFailed, match="no suitable node") as info:
        await wait_swarm_healthy(name, time_limit=20, rules=FAST, emit=recorder)
    assert f"{name}_db" in str(info.value)


async def test_timeout_names_what_it_waited_for(tmp_path: Path, docker_env, recorder) -> None:
    name = docker_env.name("slow")
    run_dir = write(tmp_path, UNSCHEDULABLE, docker_env.image)
    await deploy(run_dir, name, recorder)
    patient = Rules(max_failures=2, min_running=0.5, stall_grace=60)
    with pytest.raises(HealthGateFailed, match="not healthy after 1.5s") as info:
        await wait_swarm_healthy(name, time_limit=1.5, rules=patient)
    assert "0/1 running" in str(info.value) and "no suitable node" in str(info.value)


async def test_missing_image_is_reported(tmp_path: Path, docker_env, recorder) -> None:
    name = docker_env.name("noimg")
    run_dir = write(tmp_path, NO_IMAGE, docker_env.image)
    await deploy(run_dir, name, recorder)
    with pytest.raises(HealthGateFailed, match="No such image") as info:
        await wait_swarm_healthy(name, time_limit=20, rules=FAST)
    assert f"{name}_app" in str(info.value)


async def test_bad_stack_file_fails_the_deploy(tmp_path: Path, docker_env, recorder) -> None:
    run_dir = write(tmp_path, "services: [not, a, mapping]\n", docker_env.image)
    with pytest.raises(StackDeployFailed):
        await deploy(run_dir, docker_env.name("bad"), recorder)
    assert recorder.lines  # the CLI's complaint was streamed


def test_stack_listing_is_json(docker_env) -> None:
    # the prefix is ours alone: nothing of it exists before a test creates it
    listing = docker_env.docker("stack", "ls", "--format", "{{json .}}")
    assert all(docker_env.prefix not in json.loads(row)["Name"] for row in listing.splitlines())
