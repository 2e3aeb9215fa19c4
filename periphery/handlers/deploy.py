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
from periphery.fences import FenceBook
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
    StackState,
    Stream,
    SwarmDeploy,
    SwarmRemove,
    WaitHealthy,
)
from protocol.transport import Outcome, OutputWriter

Emit = Callable[[str, bytes], Awaitable[None]]


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
        self.fences = FenceBook(config.root / ".stackward" / "fences.json")

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

    async def checkout(self, command: Checkout, out: OutputWriter) -> Outcome:
        if stale := self._stale(command.fence):
            return stale
        try:
            path = await checkout.checkout(
                self.root, command.repo_url, command.commit, command.target, emitter(out)
            )
        except PeripheryError as exc:
            return failure(exc)
        return Outcome(exit_code=0, value=CheckoutReport(commit=path.name, path=str(path)))

    async def repo_sync(self, command: RepoSync, out: OutputWriter) -> Outcome:
        if stale := self._stale(command.fence):
            return stale
        try:
            path = await repo.sync_repo(
                self.root, command.url, command.commit, command.path, emitter(out)
            )
        except PeripheryError as exc:
            return failure(exc)
        return Outcome(exit_code=0, value=CheckoutReport(commit=command.commit, path=str(path)))

    async def pre_deploy(self, command: PreDeploy, out: OutputWriter) -> Outcome:
        if stale := self._stale(command.fence):
            return stale
        try:
            await predeploy.run_pre_deploy(
                self._checkout_dir(command.target),
                command.command,
                command.path or None,
                command.env,
                emitter(out),
                time_limit=command.timeout,
            )
        except PeripheryError as exc:
            return failure(exc)
        return Outcome(exit_code=0)

    async def compose_up(self, command: ComposeUp, out: OutputWriter) -> Outcome:
        if stale := self._stale(command.fence):
            return stale
        try:
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
                emitter(out),
            )
        except PeripheryError as exc:
            return failure(exc)
        return Outcome(exit_code=0)

    async def swarm_deploy(self, command: SwarmDeploy, out: OutputWriter) -> Outcome:
        if stale := self._stale(command.fence):
            return stale
        try:
            paths = run_paths(
                self._checkout_dir(command.target), command.run_directory, command.files
            )
            env = merge_env_files(paths.run_directory, command.env_files, command.env)
            await swarm.swarm_deploy(
                command.stack,
                paths.relative_files(),
                paths.run_directory,
                env,
                emitter(out),
            )
        except PeripheryError as exc:
            return failure(exc)
        return Outcome(exit_code=0)

    async def compose_down(self, command: ComposeDown, out: OutputWriter) -> Outcome:
        if stale := self._stale(command.fence):
            return stale
        try:
            await compose.compose_down(command.project, emitter(out))
        except PeripheryError as exc:
            return failure(exc)
        return Outcome(exit_code=0)

    async def swarm_remove(self, command: SwarmRemove, out: OutputWriter) -> Outcome:
        if stale := self._stale(command.fence):
            return stale
        try:
            await swarm.swarm_remove(command.stack, emitter(out))
        except PeripheryError as exc:
            return failure(exc)
        return Outcome(exit_code=0)

    async def wait_healthy(self, command: WaitHealthy, out: OutputWriter) -> Outcome:
        if stale := self._stale(command.fence):
            return stale
        gate = (
            health.wait_swarm_healthy
            if command.mode is DeployMode.SWARM
            else health.wait_compose_healthy
        )
        try:
            verdicts = await gate(
                command.name,
                ignore_services=command.ignore_services,
                time_limit=command.timeout,
                emit=emitter(out),
            )
        except PeripheryError as exc:
            return failure(exc)
        return Outcome(exit_code=0, value=_report(verdicts))

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
