"""Routing of decoded commands to their handlers, by ``match`` on the command's type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from periphery.config import LoadedConfig
from periphery.handlers import health, run
from protocol.messages import (
    Checkout,
    Command,
    ComposeDown,
    ComposeUp,
    Echo,
    EchoReply,
    Health,
    PreDeploy,
    RepoSync,
    Run,
    StackState,
    SwarmDeploy,
    SwarmRemove,
    WaitHealthy,
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
            case Checkout():
                return await self.deploy.checkout(command, out)
            case RepoSync():
                return await self.deploy.repo_sync(command, out)
            case PreDeploy():
                return await self.deploy.pre_deploy(command, out)
            case ComposeUp():
                return await self.deploy.compose_up(command, out)
            case SwarmDeploy():
                return await self.deploy.swarm_deploy(command, out)
            case ComposeDown():
                return await self.deploy.compose_down(command, out)
            case SwarmRemove():
                return await self.deploy.swarm_remove(command, out)
            case WaitHealthy():
                return await self.deploy.wait_healthy(command, out)
            case StackState():
                return await self.deploy.stack_state(command, out)
