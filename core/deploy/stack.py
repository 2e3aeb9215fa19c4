"""One stack's deploy, step by step over its periphery's channel, in Komodo's order.

``secrets`` (Swarm, when the core keeps plain-named external secrets) → ``checkout`` (Komodo's
``write_stack``: the files, the env file, the files that must exist, the registry login) →
``pre_deploy`` → ``deploy`` (``docker stack deploy`` or ``docker compose up``) →
``post_deploy`` (right after the deploy command, as Komodo runs it; its failure fails the
stack) → ``health`` (the gate, unless ``[stack.config.health] wait = false``).

Every step and every output line goes to a ``StepRecorder``; the first failing step raises
``StackFailed`` whose message names the step and the periphery's reason. The commands each step
sends are built by the pure functions below (the Komodo table test checks them row by row).
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
    GitCredentials,
    PreDeploy,
    RegistryLogin,
    SecretCreate,
    StackSource,
    Stream,
    SwarmDeploy,
    WaitHealthy,
)
from protocol.transport import CoreChannel

DEFAULT_PRE_DEPLOY_TIMEOUT = 300.0
EXTERNAL_LABEL = "stackward.external"
"""The label of a swarm secret the core made under its plain name (``[external_secrets]``)."""


@dataclass(frozen=True)
class CommandStep:
    """A ``pre_deploy`` or ``post_deploy`` command: its text (interpolated), ``path`` (joined
    to the run directory) and Komodo's mode (``shell_mode``: the text as it is)."""

    command: str
    path: str = ""
    shell_mode: bool = False


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
    files: tuple[str, ...] = ()  # the compose files, relative to the run directory
    env: dict[str, str] = field(default_factory=dict)  # process environment of the deploy
    env_files: tuple[str, ...] = ()  # additional_env_files, relative to the run directory
    pre_deploy: tuple[CommandStep, ...] = ()
    post_deploy: tuple[CommandStep, ...] = ()
    auto_pull: bool = True
    ignore_services: tuple[str, ...] = ()
    health_wait: bool = True
    health_timeout: float = 300.0
    source: StackSource = StackSource.GIT
    env_file_path: str = ".env"
    env_file: str = ""  # the env file's contents as Komodo writes them ("" : none)
    file_contents: str = ""
    required_files: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    destroy_before_deploy: bool = False
    credentials: GitCredentials | None = field(default=None, repr=False)
    registry: RegistryLogin | None = field(default=None, repr=False)
    pre_deploy_timeout: float = DEFAULT_PRE_DEPLOY_TIMEOUT
    post_deploy_timeout: float = DEFAULT_PRE_DEPLOY_TIMEOUT
    networks: tuple[str, ...] = ()  # overlay networks the core may make (external_networks)
    external_secrets: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # An image update (core/updates): pull first, whatever auto_pull says, and bring up only
    # these services (() : all of them).
    pull: bool = False
    services: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return self.name

    @property
    def docker_name(self) -> str:
        return self.project or self.name

    @property
    def write_step(self) -> str:
        return "checkout" if self.source is StackSource.GIT else "write"


class StepRecorder(Protocol):
    async def step_started(self, job: StackJob, step: str) -> None: ...

    async def output(self, job: StackJob, step: str, stream: Stream, data: bytes) -> None: ...

    async def step_finished(
        self, job: StackJob, step: str, ok: bool, message: str, seconds: float
    ) -> None: ...


# ------------------------------------------------------------------------- commands (pure)


def external_secret(name: str, data: bytes) -> SecretCreate:
    """A swarm secret under its plain name, made when missing (never changed once made: a new
    value needs a new name, or a versioned ``[swarm_secrets]`` entry)."""
    return SecretCreate(name=name, data=data, labels={EXTERNAL_LABEL: name})


def secret_commands(job: StackJob) -> list[SecretCreate]:
    """The plain-named external secrets a Swarm deploy makes sure of (each made when missing)."""
    if job.mode is not DeployMode.SWARM:
        return []
    return [external_secret(name, value.encode()) for name, value in job.external_secrets]


def checkout_command(job: StackJob, fence: Fence | None = None) -> Checkout:
    return Checkout(
        repo_url=job.repo_url,
        commit=job.commit,
        target=job.target,
        fence=fence,
        credentials=job.credentials,
        source=job.source,
        run_directory=job.run_directory,
        file_paths=list(job.files),
        file_contents=job.file_contents,
        env_file_path=job.env_file_path,
        env_file=job.env_file,
        required_files=list(job.required_files),
        registry=job.registry,
    )


def command_steps(
    job: StackJob, stage: str, fence: Fence | None = None
) -> list[tuple[str, PreDeploy]]:
    """``(step name, command)`` of each ``pre_deploy`` or ``post_deploy`` command."""
    steps = job.pre_deploy if stage == "pre_deploy" else job.post_deploy
    limit = job.pre_deploy_timeout if stage == "pre_deploy" else job.post_deploy_timeout
    out = []
    for index, step in enumerate(steps):
        name = stage if len(steps) == 1 else f"{stage}[{index}]"
        out.append(
            (
                name,
                PreDeploy(
                    target=job.target,
                    command=step.command,
                    path=step.path,
                    timeout=limit,
                    run_directory=job.run_directory,
                    shell_mode=step.shell_mode,
                    source=job.source,
                    stage=stage,
                    fence=fence,
                ),
            )
        )
    return out


def deploy_command(job: StackJob, env_file: str, fence: Fence | None = None) -> Command:
    """``env_file``: the written env file the checkout reported ("" : none)."""
    if job.mode is DeployMode.SWARM:
        return SwarmDeploy(
            stack=job.docker_name,
            target=job.target,
            run_directory=job.run_directory,
            files=list(job.files),
            env=job.env,
            env_files=list(job.env_files),
            fence=fence,
            source=job.source,
            env_file_path=env_file,
            extra_args=list(job.extra_args),
            destroy_before_deploy=job.destroy_before_deploy,
            registry_auth=job.registry is not None,
            networks=list(job.networks),
            services=list(job.services),
        )
    return ComposeUp(
        project=job.docker_name,
        target=job.target,
        run_directory=job.run_directory,
        files=list(job.files),
        env=job.env,
        auto_pull=job.auto_pull,
        env_files=list(job.env_files),
        fence=fence,
        source=job.source,
        env_file_path=env_file,
        extra_args=list(job.extra_args),
        destroy_before_deploy=job.destroy_before_deploy,
        networks=list(job.networks),
        services=list(job.services),
        pull=job.pull,
    )


def health_command(job: StackJob, fence: Fence | None = None) -> WaitHealthy:
    return WaitHealthy(
        mode=job.mode,
        name=job.docker_name,
        ignore_services=list(job.ignore_services),
        timeout=job.health_timeout,
        fence=fence,
    )


# ------------------------------------------------------------------------------------ I/O


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
    channel: CoreChannel,
    job: StackJob,
    recorder: StepRecorder,
    fence: Fence | None = None,
    waiting: Callable[[], None] | None = None,
) -> str:
    """Run every step; return the full commit deployed ("" for a stack not from git).
    ``waiting`` is called when only the health gate is left. Raises ``StackFailed``."""
    secrets = secret_commands(job)
    for index, secret in enumerate(secrets):
        step = "secrets" if len(secrets) == 1 else f"secrets[{index}]"
        await run_step(channel, job, step, secret, recorder)
    report = await run_step(channel, job, job.write_step, checkout_command(job, fence), recorder)
    commit, env_file = job.commit, ""
    if isinstance(report, CheckoutReport):
        commit, env_file = report.commit or job.commit, report.env_file
    for step, command in command_steps(job, "pre_deploy", fence):
        await run_step(channel, job, step, command, recorder)
    await run_step(channel, job, "deploy", deploy_command(job, env_file, fence), recorder)
    for step, command in command_steps(job, "post_deploy", fence):
        await run_step(channel, job, step, command, recorder)
    if job.health_wait:
        if waiting is not None:
            waiting()
        await run_step(channel, job, "health", health_command(job, fence), recorder)
    return commit
