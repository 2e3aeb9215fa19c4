"""One stack's deploy, step by step over its periphery's channel.

``checkout`` → ``pre_deploy`` (each command) → ``deploy`` (``docker stack deploy`` or
``docker compose up``) → ``health`` (the gate, unless ``[stack.config.health] wait = false``).
Every step and every output line goes to a ``StepRecorder``; the first failing step raises
``StackFailed`` whose message names the step and the periphery's reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from core.deploy.schedule import StackFailed
from protocol.exceptions import ChannelError
from protocol.messages import (
    Checkout,
    CheckoutReport,
    Command,
    ComposeUp,
    DeployMode,
    Fence,
    PreDeploy,
    Stream,
    SwarmDeploy,
    WaitHealthy,
)
from protocol.transport import CoreChannel

DEFAULT_PRE_DEPLOY_TIMEOUT = 300.0


@dataclass(frozen=True)
class PreDeployStep:
    command: str
    path: str = ""


@dataclass(frozen=True)
class StackJob:
    """Everything a stack's deploy needs, resolved from its resource (secrets interpolated)."""

    name: str
    mode: DeployMode
    server: str  # the server whose periphery runs it
    repo_url: str
    commit: str
    project: str = ""  # compose project / swarm stack name; defaults to ``name``
    run_directory: str = ""
    files: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    env_files: tuple[str, ...] = ()  # additional_env_files, relative to the run directory
    pre_deploy: tuple[PreDeployStep, ...] = ()
    auto_pull: bool = True
    ignore_services: tuple[str, ...] = ()
    health_wait: bool = True
    health_timeout: float = 300.0

    @property
    def target(self) -> str:
        return self.name

    @property
    def docker_name(self) -> str:
        return self.project or self.name


class StepRecorder(Protocol):
    async def step_started(self, job: StackJob, step: str) -> None: ...

    async def output(self, job: StackJob, step: str, stream: Stream, data: bytes) -> None: ...

    async def step_finished(
        self, job: StackJob, step: str, ok: bool, message: str, seconds: float
    ) -> None: ...


async def run_step(
    channel: CoreChannel, job: StackJob, step: str, command: Command, recorder: StepRecorder
) -> object:
    await recorder.step_started(job, step)
    started = time.monotonic()
    try:
        async with channel.call(command) as call:
            async for chunk in call:
                await recorder.output(job, step, chunk.stream, bytes(chunk.data))
            result = call.result
    except ChannelError as exc:
        message = f"{step}: lost the periphery of {job.server!r}: {exc}"
        await recorder.step_finished(job, step, False, message, time.monotonic() - started)
        raise StackFailed(message) from exc
    assert result is not None
    seconds = time.monotonic() - started
    if result.error is not None:
        message = f"{step}: {result.error.message}"
        await recorder.step_finished(job, step, False, message, seconds)
        raise StackFailed(message)
    if result.exit_code not in (0, None):
        message = f"{step}: exited with {result.exit_code}"
        await recorder.step_finished(job, step, False, message, seconds)
        raise StackFailed(message)
    await recorder.step_finished(job, step, True, "", seconds)
    return result.value


async def deploy_stack(
    channel: CoreChannel, job: StackJob, recorder: StepRecorder, fence: Fence | None = None
) -> str:
    """Run every step; return the full commit deployed. Raises ``StackFailed``."""
    report = await run_step(
        channel,
        job,
        "checkout",
        Checkout(repo_url=job.repo_url, commit=job.commit, target=job.target, fence=fence),
        recorder,
    )
    commit = report.commit if isinstance(report, CheckoutReport) else job.commit
    for index, pre in enumerate(job.pre_deploy):
        if not pre.command.strip():
            continue
        step = "pre_deploy" if len(job.pre_deploy) == 1 else f"pre_deploy[{index}]"
        await run_step(
            channel,
            job,
            step,
            PreDeploy(
                target=job.target,
                command=pre.command,
                path=pre.path,
                env=job.env,
                timeout=DEFAULT_PRE_DEPLOY_TIMEOUT,
                fence=fence,
            ),
            recorder,
        )
    deploy: Command
    if job.mode is DeployMode.SWARM:
        deploy = SwarmDeploy(
            stack=job.docker_name,
            target=job.target,
            run_directory=job.run_directory,
            files=list(job.files),
            env=job.env,
            env_files=list(job.env_files),
            fence=fence,
        )
    else:
        deploy = ComposeUp(
            project=job.docker_name,
            target=job.target,
            run_directory=job.run_directory,
            files=list(job.files),
            env=job.env,
            auto_pull=job.auto_pull,
            env_files=list(job.env_files),
            fence=fence,
        )
    await run_step(channel, job, "deploy", deploy, recorder)
    if job.health_wait:
        await run_step(
            channel,
            job,
            "health",
            WaitHealthy(
                mode=job.mode,
                name=job.docker_name,
                ignore_services=list(job.ignore_services),
                timeout=job.health_timeout,
                fence=fence,
            ),
            recorder,
        )
    return commit
