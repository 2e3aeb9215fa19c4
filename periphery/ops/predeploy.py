"""Run a stack's ``pre_deploy.command`` (``sh -c``) before its deploy; a failure aborts it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from periphery.exceptions import CommandFailed, CommandTimeout, PreDeployFailed
from periphery.ops.envfile import check_env
from periphery.ops.paths import resolve_inside
from periphery.ops.process import Emit, base_env, note, run

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0


def pre_deploy_directory(checkout: Path, path: str | None) -> Path:
    """``pre_deploy.path``: absolute as given (it comes from the resource file), else confined
    to the checkout. Raises :class:`ForbiddenPath` or :class:`PreDeployFailed` (not a directory).
    """
    if path and PurePosixPath(path).is_absolute():
        workdir = Path(path)
    else:
        workdir = resolve_inside(checkout, path or ".")
    if not workdir.is_dir():
        raise PreDeployFailed(f"pre_deploy.path {path!r} is not a directory")
    return workdir


async def run_pre_deploy(
    checkout: Path,
    command: str,
    path: str | None,
    env: Mapping[str, str],
    emit: Emit,
    time_limit: float = DEFAULT_TIMEOUT,
) -> None:
    """Run ``sh -c command`` in ``path`` with the agent's base environment plus ``env``.

    An empty command does nothing. A non-zero exit, a timeout (the whole process group is
    killed) or a command that cannot start raises :class:`PreDeployFailed`.
    """
    if not command.strip():
        return
    check_env(env)
    workdir = pre_deploy_directory(checkout, path)
    await note(emit, f"$ sh -c {command!r}  (in {workdir})")
    try:
        done = await run(
            ["sh", "-c", command], emit=emit, time_limit=time_limit, cwd=workdir, env=base_env(env)
        )
    except CommandTimeout as exc:
        raise PreDeployFailed(f"pre_deploy.command timed out: {exc}") from exc
    except CommandFailed as exc:
        raise PreDeployFailed(f"pre_deploy.command could not start: {exc}") from exc
    if done.returncode != 0:
        raise PreDeployFailed(done.summary("pre_deploy.command"))
    log.info("pre-deploy command succeeded in %s", workdir)
