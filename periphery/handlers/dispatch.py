"""Routing of decoded commands to their handlers, by ``match`` on the command's type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from periphery.config import LoadedConfig
from periphery.handlers import docker_events, health, run
from protocol.messages import (
    Checkout,
    Command,
    ComposeDown,
    ComposeUp,
    Echo,
    EchoReply,
    Health,
    ImageDigests,
    PreDeploy,
    RepoSync,
    Run,
    SecretCreate,
    SecretList,
    SecretRemove,
    StackState,
    SwarmDeploy,
    SwarmInit,
    SwarmRemove,
    WaitHealthy,
    WatchDocker,
)

if TYPE_CHECKING:
    from periphery.handlers.deploy import DeployHandlers
from protocol.transport import Outcome, OutputWriter


class Dispatcher:
    """The channel's handler: one instance per agent, shared by every connection."""

    def __init__(self, config: LoadedConfig) -> None:
        self.config = config
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
            ):
                return await self.deploy.handle(command, out)
            case StackState():
                return await self.deploy.stack_state(command, out)
            case ImageDigests():
                return await self.deploy.image_digests(command)
            case SwarmInit() | SecretList() | SecretCreate() | SecretRemove():
                from periphery.handlers import host  # deferred like the deploy operations

                return await host.handle(command, out)
            case WatchDocker():
                return await docker_events.handle(command, out)
