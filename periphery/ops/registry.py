"""``docker login`` before a deploy, as Komodo's ``maybe_login_registry`` and ``docker_login``
do it (``stack/mod.rs``, ``docker/mod.rs``): ``docker login --username ACCOUNT
--password-stdin -- DOMAIN``, the token on stdin only (never in argv, a log or output)."""

from __future__ import annotations

import logging

from periphery.exceptions import CommandFailed, DeployError
from periphery.process import Emit, base_env, note, run, shown
from protocol.messages import RegistryLogin

log = logging.getLogger(__name__)

LOGIN_TIMEOUT = 60.0


def login_argv(login: RegistryLogin) -> list[str]:
    return ["docker", "login", "--username", login.username, "--password-stdin", "--", login.domain]


async def docker_login(login: RegistryLogin, emit: Emit) -> None:
    """Log in; raises :class:`DeployError` (with docker's output, never the token)."""
    argv = login_argv(login)
    await note(emit, f"$ {shown(argv)}")

    async def masked(stream: str, line: bytes) -> None:
        await emit(stream, line.replace(login.token.encode(), b"***") if login.token else line)

    try:
        done = await run(
            argv, emit=masked, time_limit=LOGIN_TIMEOUT, env=base_env(), stdin=login.token.encode()
        )
    except CommandFailed as exc:
        raise DeployError(f"login to {login.domain}: {exc}") from exc
    if done.returncode != 0:
        summary = done.summary("docker login")
        raise DeployError(
            f"failed to login to image registry {login.domain} as {login.username}: "
            + (summary.replace(login.token, "***") if login.token else summary)
        )
    log.info("logged in to %s as %s", login.domain, login.username)
