"""Routing of decoded commands to their handlers, by ``match`` on the command's type."""

from __future__ import annotations

from periphery.config import LoadedConfig
from periphery.handlers import health, run
from protocol.messages import Command, Echo, Health, Run
from protocol.transport import Outcome, OutputWriter


class Dispatcher:
    """The channel's handler: one instance per agent, shared by every connection."""

    def __init__(self, config: LoadedConfig) -> None:
        self.config = config

    async def __call__(self, command: Command, out: OutputWriter) -> Outcome:
        match command:
            case Health():
                return await health.handle(self.config)
            case Echo(data=data):
                await out.stdout(data)
                return Outcome(exit_code=0)
            case Run():
                return await run.handle(command, out, self.config)
