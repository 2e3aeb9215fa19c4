"""A server's ``auto_prune``, as Komodo's core does it (``bin/core/src/helpers/prune.rs``,
``spawn_prune_loop`` and ``prune_images``; the command in ``bin/periphery/src/api/docker.rs``,
``PruneImages``):

- when: once a day, 5 seconds past midnight UTC (``wait_until_timelength(OneDay, 5000)``);
- where: every server with ``enabled = true`` and ``auto_prune = true`` (Komodo's defaults:
  ``enabled`` false, ``auto_prune`` true);
- what: ``docker image prune -a -f`` (unused images, dangling or not; containers, volumes and
  networks are left alone); a server that cannot be reached is skipped with a warning.

The schedule and the choice are pure (:func:`next_prune`, :func:`prune_targets`); the loop
(:func:`run_prune_loop`) asks each server's periphery to run the command (``Run``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import anyio

from core.resources.models import ServerConfig
from protocol.exceptions import ChannelError
from protocol.messages import Run
from protocol.transport import CoreChannel

log = logging.getLogger(__name__)

DAY = 86_400.0
OFFSET = 5.0  # seconds past midnight UTC
PRUNE_ARGV = ("docker", "image", "prune", "-a", "-f")
PRUNE_TIMEOUT = 600.0


def next_prune(now: float) -> float:
    """The first prune time (epoch seconds) after ``now``: the next ``midnight UTC + 5 s``."""
    day_start = now - now % DAY
    at = day_start + OFFSET
    return at if at > now else at + DAY


def prune_targets(servers: Mapping[str, ServerConfig]) -> list[str]:
    """The servers Komodo prunes: ``enabled`` and ``auto_prune``, by name."""
    return sorted(name for name, cfg in servers.items() if cfg.enabled and cfg.auto_prune)


def prune_command() -> Run:
    return Run(argv=list(PRUNE_ARGV), timeout=PRUNE_TIMEOUT)


async def prune_server(name: str, channel: CoreChannel) -> bool:
    """Run the prune on one server; True when it exited 0 (its output is logged at debug)."""
    try:
        result, output = await channel.request(prune_command())
    except ChannelError as exc:
        log.warning("auto_prune %s: %s", name, exc)
        return False
    if result.error is not None or result.exit_code != 0:
        reason = result.error.message if result.error else f"exit {result.exit_code}"
        log.warning("auto_prune %s: docker image prune failed: %s", name, reason)
        return False
    text = b"".join(bytes(c.data) for c in output).decode("utf-8", "replace").strip()
    log.info("auto_prune %s: %s", name, text.splitlines()[-1] if text else "done")
    return True


Servers = Callable[[], Awaitable[Mapping[str, ServerConfig]]]
Channel = Callable[[str], Awaitable[CoreChannel]]


async def prune_once(servers: Servers, channel: Channel) -> dict[str, bool]:
    """Prune every target server now; ``{server: pruned}``."""
    out: dict[str, bool] = {}
    for name in prune_targets(await servers()):
        try:
            out[name] = await prune_server(name, await channel(name))
        except Exception as exc:  # one unreachable server does not stop the others
            log.warning("auto_prune %s: %s", name, exc)
            out[name] = False
    return out


async def run_prune_loop(
    servers: Servers,
    channel: Channel,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Until cancelled: wait for the next prune time, prune, again."""
    while True:
        await anyio.sleep(max(0.0, next_prune(clock()) - clock()))
        await prune_once(servers, channel)
