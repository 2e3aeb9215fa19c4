"""The deploy commands: checkout, pre-deploy, Compose and Swarm deploys and removals, and the
health gate. Each wraps an operation of ``periphery.ops``, streams its output, and turns its
errors into typed results."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from periphery.config import LoadedConfig
from periphery.exceptions import (
    CommandTimeout,
    DeployError,
    ForbiddenPath,
    InvalidName,
    PeripheryError,
)
from periphery.fences import FenceBook, fence_file
from periphery.ops import checkout, compose, health, predeploy, repo, swarm
from periphery.ops.envfile import merge_env_files
from periphery.ops.paths import resolve_inside, run_paths, safe_name
from periphery.ops.verdict import State, Verdict
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
    PreDeploy,
    RepoSync,
    ResultValue,
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
        self.fences = FenceBook(fence_file(config.root))

    def _checkout_dir(self, target: str) -> Path:
        current = resolve_inside(self.root, safe_name(target, "target")) / "current"
        if not current.is_dir():
            raise DeployError(f"{target!r} has no checkout yet: run Checkout first")
        return current.resolve()

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
                path = await checkout.checkout(
                    self.root, command.repo_url, command.commit, command.target, emit
                )
                return CheckoutReport(commit=path.name, path=str(path))
            case RepoSync():
                path = await repo.sync_repo(
                    self.root, command.url, command.commit, command.path, emit
                )
                return CheckoutReport(commit=command.commit, path=str(path))
            case PreDeploy():
                await predeploy.run_pre_deploy(
                    self._checkout_dir(command.target),
                    command.command,
                    command.path or None,
                    command.env,
                    emit,
                    time_limit=command.timeout,
                )
            case ComposeUp():
                paths = run_paths(
                    self._checkout_dir(command.target), command.run_directory, command.files
                )
                env = merge_env_files(paths.run_directory, command.env_files, command.env)
                await compose.compose_up(
                    command.project,
                    paths.relative_files(),
                    paths.run_directory,
                    env,
                    command.auto_pull,
                    emit,
                )
            case SwarmDeploy():
                paths = run_paths(
                    self._checkout_dir(command.target), command.run_directory, command.files
                )
                env = merge_env_files(paths.run_directory, command.env_files, command.env)
                await swarm.swarm_deploy(
                    command.stack, paths.relative_files(), paths.run_directory, env, emit
                )
            case ComposeDown():
                await compose.compose_down(command.project, emit)
            case SwarmRemove():
                await swarm.swarm_remove(command.stack, emit)
            case WaitHealthy():
                gate = (
                    health.wait_swarm_healthy
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
