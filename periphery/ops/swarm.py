"""``docker stack deploy -c FILE… NAME`` and ``docker stack rm NAME``.

What reaches the containers: only what the stack files give them (``environment:``,
``env_file:``). ``docker stack deploy`` does not read ``.env``: the stack's environment is set in
the process environment of the command, where it serves ``${VAR}`` interpolation in the files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import aiodocker
import anyio

from periphery.exceptions import CommandFailed, CommandTimeout, StackDeployFailed
from periphery.ops.dockercli import STACK_DETACH, probe, read_stack_files, stack_name
from periphery.ops.envfile import check_env
from periphery.ops.paths import resolve_inside
from periphery.ops.process import Emit, base_env, note, run, shown

log = logging.getLogger(__name__)

DEPLOY_TIMEOUT = 600.0
REMOVE_TIMEOUT = 120.0
POLL = 0.25
RETRY_RM = 1.0
NAMESPACE_LABEL = "com.docker.stack.namespace"

ResolveImage = Literal["always", "changed", "never"]


async def _docker(
    argv: list[str], env: dict[str, str], emit: Emit, time_limit: float, cwd: Path | None = None
) -> int:
    await note(emit, f"$ {shown(argv)}")
    try:
        done = await run(argv, emit=emit, time_limit=time_limit, cwd=cwd, env=env)
    except (CommandTimeout, CommandFailed) as exc:
        raise StackDeployFailed(str(exc)) from exc
    return done.returncode


async def swarm_deploy(
    name: str,
    files: Sequence[str],
    workdir: Path,
    env: Mapping[str, str],
    emit: Emit,
    *,
    prune: bool = False,
    resolve_image: ResolveImage = "always",
    with_registry_auth: bool = True,
    time_limit: float = DEPLOY_TIMEOUT,
) -> None:
    """Deploy (create or update) the stack ``name`` from ``files`` (relative to ``workdir``).

    Returns once the engine accepted the services; their health is :mod:`periphery.ops.health`'s
    business. Raises :class:`StackDeployFailed` on a non-zero exit.
    """
    stack_name(name)
    check_env(env)
    paths = [resolve_inside(workdir, f) for f in files]
    caps = await probe()
    caps.check_stack_files(read_stack_files(paths))
    argv = ["docker", "stack", "deploy"]
    if caps.has(STACK_DETACH):
        argv.append("--detach=true")
    for path in paths:
        argv += ["-c", str(path)]
    argv += ["--resolve-image", resolve_image]
    if prune:
        argv.append("--prune")
    if with_registry_auth:
        argv.append("--with-registry-auth")
    argv.append(name)
    if await _docker(argv, base_env(env), emit, time_limit, workdir) != 0:
        raise StackDeployFailed(f"docker stack deploy of {name!r} failed (see the output above)")


async def _leftovers(docker: aiodocker.Docker, name: str) -> tuple[int, int]:
    """How many services and networks of stack ``name`` still exist."""
    filters = {"label": f"{NAMESPACE_LABEL}={name}"}
    services = await docker.services.list(filters=filters)
    networks = await docker.networks.list(filters=filters)
    return len(services), len(networks)


async def _remove_job_containers(docker: aiodocker.Docker, name: str, emit: Emit) -> None:
    """Engine 20.10 leaves the containers of finished job tasks behind; remove this node's."""
    filters = json.dumps({"label": [f"{NAMESPACE_LABEL}={name}"]})
    for container in await docker.containers.list(all=True, filters=filters):
        try:
            await container.delete(force=True)
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                await note(
                    emit, f"warning: cannot remove container {container.id}: {exc}", "stderr"
                )


async def swarm_remove(name: str, emit: Emit, time_limit: float = REMOVE_TIMEOUT) -> None:
    """``docker stack rm NAME``, then wait until its services and networks are gone (so that a
    new deploy of the same name does not trip over a network still being removed).

    The engine sometimes refuses to remove a network "in use by task" that is being shut down;
    ``docker stack rm`` then exits non-zero. It is repeated (it removes what is left) every
    :data:`RETRY_RM` seconds until nothing is left or ``time_limit`` passes.
    """
    stack_name(name)
    argv = ["docker", "stack", "rm", name]
    try:
        with anyio.fail_after(time_limit):
            code = await _docker(argv, base_env(), emit, time_limit)
            last_rm = anyio.current_time()
            async with aiodocker.Docker() as docker:
                while True:
                    services, networks = await _leftovers(docker, name)
                    if not services and not networks:
                        break
                    if code != 0 and anyio.current_time() - last_rm >= RETRY_RM:
                        code = await _docker(argv, base_env(), emit, time_limit)
                        last_rm = anyio.current_time()
                    await anyio.sleep(POLL)
                await _remove_job_containers(docker, name, emit)
    except TimeoutError as exc:
        raise StackDeployFailed(
            f"stack {name!r}: services or networks still present {time_limit:g}s after removal"
        ) from exc
    await note(emit, f"stack {name} removed")
