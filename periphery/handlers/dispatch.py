"""Routing of decoded commands to their handlers, by ``match`` on the command's type."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.to_thread

from periphery.config import LoadedConfig
from periphery.handlers import docker_events, health, run
from periphery.keys import KeyHolder, RotationError
from protocol.exceptions import BadKey
from protocol.keys import PublicKey
from protocol.messages import (
    Checkout,
    Command,
    ComposeDown,
    ComposeUp,
    Echo,
    EchoReply,
    ErrorCode,
    ErrorInfo,
    Health,
    KeyReport,
    PreDeploy,
    RepoSync,
    RotateKey,
    Run,
    SecretCreate,
    SecretList,
    SecretRemove,
    StackControl,
    StackState,
    SwarmDeploy,
    SwarmInit,
    SwarmRemove,
    WaitHealthy,
    WatchDocker,
    key_proof_data,
)

if TYPE_CHECKING:
    from periphery.handlers.deploy import DeployHandlers
from protocol.transport import Outcome, OutputWriter


class Dispatcher:
    """The channel's handler: one instance per agent, shared by every connection."""

    def __init__(self, config: LoadedConfig, keys: KeyHolder | None = None) -> None:
        self.config = config
        self.keys = keys  # the agent's own key pair (rotated by RotateKey)
        self._deploy: DeployHandlers | None = None

    @property
    def deploy(self) -> DeployHandlers:
        # Deferred: the deploy operations pull in aiodocker and PyYAML, which an agent that
        # only answers health checks does not need in memory.
        if self._deploy is None:
            from periphery.handlers.deploy import DeployHandlers

            self._deploy = DeployHandlers(self.config)
        return self._deploy

    def inline(self, command: Command) -> Outcome | None:
        match command:
            case Echo(data=data):
                return Outcome(exit_code=0, value=EchoReply(data))
            case _:
                return None

    async def __call__(self, command: Command, out: OutputWriter) -> Outcome:
        match command:
            case Health():
                return await health.handle(self.config)
            case Echo():
                outcome = self.inline(command)
                assert outcome is not None
                return outcome
            case Run():
                return await run.handle(command, out, self.config)
            case (
                Checkout()
                | RepoSync()
                | PreDeploy()
                | ComposeUp()
                | SwarmDeploy()
                | ComposeDown()
                | SwarmRemove()
                | WaitHealthy()
                | StackControl()
            ):
                return await self.deploy.handle(command, out)
            case StackState():
                return await self.deploy.stack_state(command, out)
            case SwarmInit() | SecretList() | SecretCreate() | SecretRemove():
                from periphery.handlers import host  # deferred like the deploy operations

                return await host.handle(command, out)
            case WatchDocker():
                return await docker_events.handle(command, out)
            case RotateKey():
                return await self._rotate(command)

    async def _rotate(self, command: RotateKey) -> Outcome:
        keys = self.keys
        if keys is None:
            return Outcome(error=ErrorInfo(ErrorCode.BAD_REQUEST, "this agent cannot rotate keys"))
        try:
            if command.step == "prepare":
                public = await anyio.to_thread.run_sync(keys.prepare)
                return Outcome(exit_code=0, value=KeyReport(public.wire))
            if command.step == "commit":
                key = PublicKey.from_wire(command.public_key)
                signature = await anyio.to_thread.run_sync(
                    keys.commit, key, command.nonce, key_proof_data
                )
                return Outcome(exit_code=0, value=KeyReport(command.public_key, signature))
        except (RotationError, BadKey) as exc:
            return Outcome(error=ErrorInfo(ErrorCode.FAILED, str(exc)))
        return Outcome(
            error=ErrorInfo(ErrorCode.BAD_REQUEST, f"RotateKey step {command.step!r} is unknown")
        )
