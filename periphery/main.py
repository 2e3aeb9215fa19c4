"""Starting the agent: load the config, run until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import anyio

from periphery.agent import Agent
from periphery.config import load_config
from protocol.memory import keep_large_buffers

log = logging.getLogger(__name__)


async def _main(config_path: Path) -> None:
    config = load_config(config_path)
    agent = Agent(config)
    async with anyio.create_task_group() as tg:
        await tg.start(agent.run)
        log.info("periphery ready (key %s)", config.private_key.public_key.fingerprint())
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("stopping on %s", signal.Signals(signum).name)
                break
        tg.cancel_scope.cancel()


def serve(config_path: Path) -> int:
    """Run the agent; raises ``ConfigError`` before anything starts if the config is bad."""
    load_config(config_path)  # fail fast, before the event loop, with the file and key
    keep_large_buffers()
    anyio.run(_main, config_path)
    return 0
