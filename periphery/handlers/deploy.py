"""The deploy commands: checkout, pre-deploy, Compose and Swarm deploys and removals, and the
health gate. Each wraps an operation of ``periphery.ops``, streams its output, and turns its
errors into typed results."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from periphery.config import LoadedConfig
from periphery.exceptions import (
    CommandTimeout,
    DeployError,
    ForbiddenPath,
    InvalidName,
    PeripheryError,
)
from periphery.fences import FenceBook
from periphery.ops import commands, compose, health, images, repo, stack_control, swarm, write
from periphery.ops.swarm_look import SwarmLook
from periphery.ops.verdict import State, Verdict
from periphery.paths import STATE, StackPaths, stack_paths
from protocol.messages import (
    Checkout,
    CheckoutReport,
    ComposeDown,
    ComposeUp,
    DeployMode,
    ErrorCode,
    ErrorInfo,
    Fence,
    HealthGateReport,
    HealthVerdict,
    ImageDigests,
    PreDeploy,
    RepoSync,
    ResultValue,
    StackControl,
    StackSource,
    StackState,
    Stream,
    SwarmDeploy,
    SwarmRemove,
    WaitHealthy,
)
from protocol.transport import Outcome, OutputWriter

Emit = Callable[[str, bytes], Awaitable[None]]
DeployCommand = (
    Checkout
    | RepoSync
    | PreDeploy
    | ComposeUp
    | SwarmDeploy
    | ComposeDown
    | SwarmRemove
    | WaitHealthy
    | StackControl
)


def emitter(out: OutputWriter) -> Emit:
    async def emit(stream: str, data: bytes) -> None:
        await out.write(Stream.STDERR if stream == "stderr" else Stream.STDOUT, data)

    return emit


def failure(exc: PeripheryError) -> Outcome:
    match exc:
        case ForbiddenPath():
            code = ErrorCode.FORBIDDEN_PATH
        case InvalidName():
            code = ErrorCode.BAD_REQUEST
        case CommandTimeout():
            code = ErrorCode.TIMEOUT
        case _:
            code = ErrorCode.FAILED
    return Outcome(error=ErrorInfo(code, str(exc)))


class DeployHandlers:
    def __init__(self, config: LoadedConfig) -> None:
        self.root = config.root
        self.fences = FenceBook(config.root / STATE / "fences.json")
        self.swarm_look = SwarmLook()  # one look at the swarm for the gates waiting at once

    def _stale(self, fence: Fence | None) -> Outcome | None:
        if self.fences.admit(fence):
            return None
        assert fence is not None
        return Outcome(
            error=ErrorInfo(
                ErrorCode.STALE_FENCE,
                f"a newer deploy holds the lock on {fence.key!r} (token {fence.token} is stale)",
            )
        )

    def _paths(self, target: str, source: StackSource, run_directory: str) -> StackPaths:
        """The stack's directories; a git stack must have been checked out."""
        paths = stack_paths(self.root, target, source, run_directory)
        if source is StackSource.GIT and not paths.directory.is_dir():
            raise DeployError(f"{target!r} has no checkout yet: run Checkout first")
        if not paths.run_directory.is_dir():
            raise DeployError(
                f"run_directory {run_directory!r}: {paths.run_directory} is not a directory"
            )
        return paths

    async def handle(self, command: DeployCommand, out: OutputWriter) -> Outcome:
        """Run one deploy command: refused when its fence is stale, errors typed."""
        if stale := self._stale(command.fence):
            return stale
        try:
            value = await self._run(command, emitter(out))
        except PeripheryError as exc:
            return failure(exc)
        return Outcome(exit_code=0, value=value)

    async def _run(self, command: DeployCommand, emit: Emit) -> ResultValue | None:
        match command:
            case Checkout():
                return await write.write_stack(self.root, command, emit)
            case RepoSync():
                path = await repo.sync_repo(
                    self.root, command.url, command.commit, command.path, emit, command.credentials
                )
                return CheckoutReport(commit=command.commit, path=str(path))
            case PreDeploy():
                paths = self._paths(command.target, command.source, command.run_directory)
                argv = commands.command_argv(command.command, command.shell_mode)
                if argv is None:
                    return None
                workdir = paths.command_directory(command.path, command.stage)
                await commands.run_command(
                    argv, workdir, command.stage, emit, command.timeout, command.env
                )
            case ComposeUp():
                await compose.compose_up(
                    self._paths(command.target, command.source, command.run_directory),
                    command.target,
                    command.project,
                    command.files or ["compose.yaml"],
                    command.env_file_path,
                    command.env_files,
                    command.extra_args,
                    command.env,
                    emit,
                    auto_pull=command.auto_pull,
                    destroy_before_deploy=command.destroy_before_deploy,
                    make_networks=command.networks,
                    services=command.services,
                    pull=command.pull,
                )
            case SwarmDeploy():
                await swarm.swarm_deploy(
                    self._paths(command.target, command.source, command.run_directory),
                    command.stack,
                    command.files or ["compose.yaml"],
                    command.env_file_path,
                    command.env_files,
                    command.extra_args,
                    command.env,
                    emit,
                    registry_auth=command.registry_auth,
                    destroy_before_deploy=command.destroy_before_deploy,
                    make_networks=command.networks,
                    services=command.services,
                )
            case ComposeDown():
                await compose.compose_down(command.project, emit)
            case SwarmRemove():
                await swarm.swarm_remove(command.stack, emit)
            case StackControl():
                await stack_control.stack_control(self.root, command, emit)
            case WaitHealthy():
                gate = (
                    partial(health.wait_swarm_healthy, look=self.swarm_look)
                    if command.mode is DeployMode.SWARM
                    else health.wait_compose_healthy
                )
                verdicts = await gate(
                    command.name,
                    ignore_services=command.ignore_services,
                    time_limit=command.timeout,
                    emit=emit,
                )
                return _report(verdicts)
        return None

    async def stack_state(self, command: StackState, out: OutputWriter) -> Outcome:
        rules = health.DEFAULT_RULES
        check = (
            health.swarm_check(command.name, command.ignore_services, None, rules)
            if command.mode is DeployMode.SWARM
            else health.compose_check(command.name, command.ignore_services, rules)
        )
        try:
            verdicts = await health.snapshot(check)
        except TimeoutError:
            return Outcome(error=ErrorInfo(ErrorCode.TIMEOUT, "the Docker engine did not answer"))
        except Exception as exc:  # aiodocker and aiohttp raise many kinds
            return Outcome(error=ErrorInfo(ErrorCode.FAILED, f"Docker API: {exc}"))
        if verdicts is None:
            return Outcome(exit_code=0, value=HealthGateReport(exists=False))
        return Outcome(exit_code=0, value=_report(verdicts))

    async def image_digests(self, command: ImageDigests) -> Outcome:
        """The images the stack's services run, with their digests (no output)."""
        try:
            report = await images.image_digests(command.mode, command.name)
        except TimeoutError:
            return Outcome(error=ErrorInfo(ErrorCode.TIMEOUT, "the Docker engine did not answer"))
        except Exception as exc:  # aiodocker and aiohttp raise many kinds
            return Outcome(error=ErrorInfo(ErrorCode.FAILED, f"Docker API: {exc}"))
        return Outcome(exit_code=0, value=report)


def _report(verdicts: list[Verdict]) -> HealthGateReport:
    return HealthGateReport(
        services=[
            HealthVerdict(
                service=v.service,
                healthy=v.state is State.READY,
                detail=v.detail,
                state=v.state.name.lower(),
            )
            for v in verdicts
        ]
    )
