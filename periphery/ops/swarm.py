"""A Swarm stack's deploy, as Komodo's ``DeploySwarmStack`` runs it (``api/swarm/stack.rs``), in
the run directory: the env files sourced by the shell in Komodo's order with ``set -a`` (so their
values feed ``docker stack deploy``'s interpolation exactly as that shell reads them), then
``docker stack deploy --detach=true -c FILE… [--with-registry-auth] EXTRA_ARGS… -- NAME``;
with ``destroy_before_deploy``, ``docker stack rm`` first (waiting until it is gone).

Komodo writes that as one shell line (``set -a && . ENV && … && docker stack deploy …``); here
the shell gets a fixed script and the files and the command as its arguments, so nothing from
the request is parsed by it. ``--detach=true`` is given where the CLI knows it (26.0 and newer;
older ones are always detached); ``--with-registry-auth`` when the stack logged in to a registry
(``maybe_login_registry``). External overlay networks the core may make (``networks``) are made
first when missing.

An image update of some services (Komodo's ``auto_update`` without ``auto_update_all_services``)
does not redeploy the stack: ``docker service update --detach --image REF
[--with-registry-auth] -- STACK_SERVICE`` for each, ``REF`` the stack file's reference (the
service's ``com.docker.stack.image`` label), which the engine resolves to the tag's current
digest. Komodo redeploys the whole Swarm stack instead ("Swarm stacks don't support individual
service deploy", ``api/write/stack.rs``); ``docker stack deploy`` would update every service
whose tag moved, the skipped ones too.

:func:`swarm_plan` and :func:`service_update_argv` are pure (the Komodo table test checks the
first); :func:`swarm_deploy` runs them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiodocker
import anyio

from periphery.exceptions import CommandFailed, CommandTimeout, StackDeployFailed
from periphery.ops import networks
from periphery.ops.commands import shell, split_extra_args
from periphery.ops.dockercli import STACK_DETACH, Capabilities, probe, read_stack_files, stack_name
from periphery.ops.envfile import check_env, env_files
from periphery.paths import StackPaths
from periphery.process import Emit, base_env, note, run, shown

log = logging.getLogger(__name__)

DEPLOY_TIMEOUT = 600.0
REMOVE_TIMEOUT = 120.0
POLL = 0.25
RETRY_RM = 1.0
NAMESPACE_LABEL = "com.docker.stack.namespace"
STACK_IMAGE_LABEL = "com.docker.stack.image"
QUERY_TIMEOUT = 30.0

SOURCE_SCRIPT = (
    "set -a\n"
    'while [ "$1" != -- ]; do\n'
    '  case $1 in /*) . "$1" ;; *) . "./$1" ;; esac || exit 1\n'
    "  shift\n"
    "done\n"
    "shift\n"
    'exec "$@"\n'
)
"""Sources each argument up to ``--`` (exported), then runs the rest: Komodo's
``set -a && . FILE && … && COMMAND``."""


@dataclass(frozen=True)
class SwarmPlan:
    sourced: list[str]  # env files, in order, as given
    deploy: list[str]  # the docker stack deploy argv
    argv: list[str]  # what runs: deploy, or the shell sourcing the files first
    remove: bool  # docker stack rm first


def swarm_plan(
    caps: Capabilities,
    name: str,
    files: Sequence[str],
    env_file: str,
    additional_env_files: Sequence[str],
    extra_args: Sequence[str],
    *,
    registry_auth: bool,
    destroy_before_deploy: bool,
) -> SwarmPlan:
    """The commands of a deploy (nothing runs); ``env_file`` is the written env file ("")."""
    deploy = ["docker", "stack", "deploy"]
    if caps.has(STACK_DETACH):
        deploy.append("--detach=true")
    for path in files:
        deploy += ["-c", path]
    if registry_auth:
        deploy.append("--with-registry-auth")
    deploy += [*split_extra_args(extra_args), "--", name]
    sourced = env_files(env_file, additional_env_files)
    argv = [shell(), "-c", SOURCE_SCRIPT, "sh", *sourced, "--", *deploy] if sourced else deploy
    return SwarmPlan(sourced, deploy, argv, destroy_before_deploy)


def service_update_argv(service: str, image: str, *, registry_auth: bool) -> list[str]:
    """Update one service to the current digest of ``image``'s tag (the CLI resolves it)."""
    argv = ["docker", "service", "update", "--detach", "--image", image]
    if registry_auth:
        argv.append("--with-registry-auth")
    return [*argv, "--", service]


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
    paths: StackPaths,
    name: str,
    files: Sequence[str],
    env_file: str,
    additional_env_files: Sequence[str],
    extra_args: Sequence[str],
    env: Mapping[str, str],
    emit: Emit,
    *,
    registry_auth: bool = False,
    destroy_before_deploy: bool = False,
    make_networks: Sequence[str] = (),
    time_limit: float = DEPLOY_TIMEOUT,
    services: Sequence[str] = (),
) -> None:
    """Deploy (create or update) the stack ``name`` from ``files`` in its run directory; with
    ``services``, update only those to their tags' current digests (:func:`update_services`).

    Returns once the engine accepted the services; their health is :mod:`periphery.ops.health`'s
    business. Raises :class:`StackDeployFailed` on a non-zero exit.
    """
    stack_name(name)
    if services:
        await update_services(name, services, emit, registry_auth=registry_auth)
        return
    check_env(dict(env))
    resolved = [paths.resolve(f, what="file_paths") for f in files]
    caps = await probe()
    documents = read_stack_files(resolved)
    caps.check_stack_files(documents)
    for path in additional_env_files:
        paths.resolve(path, what="additional_env_files")
    plan = swarm_plan(
        caps,
        name,
        files,
        env_file,
        additional_env_files,
        extra_args,
        registry_auth=registry_auth,
        destroy_before_deploy=destroy_before_deploy,
    )
    if make_networks:
        await networks.ensure_networks(make_networks, documents, emit)
    if plan.remove:
        await swarm_remove(name, emit)
    if plan.sourced:
        await note(emit, "sourcing " + ", ".join(plan.sourced))
    code = await _docker_shown(plan, base_env(env), emit, time_limit, paths.run_directory)
    if code != 0:
        raise StackDeployFailed(f"docker stack deploy of {name!r} failed (see the output above)")


async def _docker_shown(
    plan: SwarmPlan, env: dict[str, str], emit: Emit, time_limit: float, cwd: Path
) -> int:
    """Run the plan's argv; show the deploy command (the sourcing script is always the same)."""
    await note(emit, f"$ {shown(plan.deploy)}")
    try:
        done = await run(plan.argv, emit=emit, time_limit=time_limit, cwd=cwd, env=env)
    except (CommandTimeout, CommandFailed) as exc:
        raise StackDeployFailed(str(exc)) from exc
    return done.returncode


async def update_services(
    name: str,
    services: Sequence[str],
    emit: Emit,
    *,
    registry_auth: bool = False,
    time_limit: float = DEPLOY_TIMEOUT,
) -> None:
    """``docker service update --image REF`` for each of the stack's ``services`` (their short
    names), ``REF`` the reference the stack file gave (:func:`service_update_argv`)."""
    async with aiodocker.Docker() as docker:
        with anyio.fail_after(QUERY_TIMEOUT):
            listed = await docker.services.list(filters={"label": f"{NAMESPACE_LABEL}={name}"})
    by_name = {str(s["Spec"]["Name"]): s for s in listed}
    for service in services:
        full = f"{name}_{service}"
        found = by_name.get(full)
        if found is None:
            raise StackDeployFailed(f"stack {name!r} has no service {service!r} to update")
        spec = found["Spec"]
        labels = spec.get("Labels") or {}
        pinned = str(spec["TaskTemplate"]["ContainerSpec"].get("Image", ""))
        image = str(labels.get(STACK_IMAGE_LABEL) or pinned.split("@", 1)[0])
        argv = service_update_argv(full, image, registry_auth=registry_auth)
        if await _docker(argv, base_env(), emit, time_limit) != 0:
            raise StackDeployFailed(f"docker service update of {full!r} failed (see above)")


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
                    services, nets = await _leftovers(docker, name)
                    if not services and not nets:
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
