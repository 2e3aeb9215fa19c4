"""Routing of decoded commands to their handlers, by ``match`` on the command's type."""

from __future__ import annotations

from periphery.config import LoadedConfig
from periphery.handlers import health, run
from protocol.messages import Command, Echo, EchoReply, Health, Run
from protocol.transport import Outcome, OutputWriter


class Dispatcher:
    """The channel's handler: one instance per agent, shared by every connection."""

    def __init__(self, config: LoadedConfig) -> None:
        self.config = config

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
