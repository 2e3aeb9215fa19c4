"""What the local Docker CLI can do, found out once per process.

- Compose: the v2 plugin (``docker compose``) when it answers ``version``, else ``docker-compose``
  (v1, the only one Debian 12 packages).
- ``docker stack deploy --detach``: CLIs from 26.0 have it (and warn when it is not given);
  older ones reject it.
"""

from __future__ import annotations

import logging
import re

from periphery.exceptions import CommandFailed, InvalidName, StackDeployFailed
from periphery.ops.process import base_env, capture

log = logging.getLogger(__name__)

QUERY_TIMEOUT = 30.0

# compose v2 requires this for project names (v1 would silently strip other characters).
_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# a swarm stack namespace becomes part of service, network and config names.
_STACK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")

_compose: tuple[str, ...] | None = None
_stack_detach: bool | None = None


def project_name(name: str) -> str:
    if not _PROJECT.fullmatch(name):
        raise InvalidName(
            f"compose project {name!r} must be lower-case letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def stack_name(name: str) -> str:
    if not _STACK.fullmatch(name):
        raise InvalidName(
            f"stack {name!r} must be letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name


async def _answers(argv: list[str]) -> bool:
    try:
        done = await capture(argv, time_limit=QUERY_TIMEOUT, env=base_env())
    except CommandFailed:
        return False
    return done.returncode == 0


async def compose_command() -> tuple[str, ...]:
    """``("docker", "compose")`` or ``("docker-compose",)``; StackDeployFailed when neither."""
    global _compose
    if _compose is None:
        for candidate in (("docker", "compose"), ("docker-compose",)):
            if await _answers([*candidate, "version"]):
                _compose = candidate
                log.info("compose command: %s", " ".join(candidate))
                break
        else:
            raise StackDeployFailed(
                "neither `docker compose` (v2 plugin) nor `docker-compose` (v1) is installed"
            )
    return _compose


async def stack_deploy_has_detach() -> bool:
    global _stack_detach
    if _stack_detach is None:
        try:
            done = await capture(
                ["docker", "stack", "deploy", "--help"], time_limit=QUERY_TIMEOUT, env=base_env()
            )
            _stack_detach = b"--detach" in done.stdout + done.stderr
        except CommandFailed:
            _stack_detach = False
    return _stack_detach
