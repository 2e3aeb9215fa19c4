"""A Compose stack's deploy, as Komodo's ``ComposeUp`` runs it (``api/compose.rs``), in the run
directory:

1. with ``auto_pull``: ``COMPOSE -p P -f FILE… [--env-file ENV…] pull [-- SERVICE…]``;
2. with ``destroy_before_deploy``: ``COMPOSE -p P down``;
3. ``COMPOSE -p P -f FILE… [--env-file ENV…] up -d EXTRA_ARGS… [-- SERVICE…]``.

``SERVICE…`` are given for an image update of some services (Komodo's ``DeployStack`` with
``services``, as ``auto_update`` sends it: ``api/write/stack.rs``); ``pull`` pulls them even
without ``auto_pull``, and then a failed pull fails the deploy (an update that pulls nothing new
deploys nothing new).

``COMPOSE`` is ``docker compose`` (v2), or ``docker-compose`` (v1) where only that exists; the
env files are :func:`periphery.ops.envfile.env_files`, in Komodo's order. What v1 needs, each
written once here: one ``--env-file`` (the files joined into one the agent keeps), and the
compose files for ``down`` (v1 finds a project only through them).

Two things differ from Komodo on purpose: a failed ``pull`` whose images are all present locally
goes on with a warning (a host that cannot reach its registry still redeploys); and external
overlay networks the core may make (``networks``) are made first when missing.

:func:`compose_plan` is pure (the Komodo table test checks it); :func:`compose_up` runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from periphery.exceptions import CommandFailed, CommandTimeout, StackDeployFailed
from periphery.ops import networks
from periphery.ops.commands import split_extra_args
from periphery.ops.dockercli import compose_command, project_name, read_stack_files
from periphery.ops.envfile import check_env, env_files, joined_env_file
from periphery.paths import STATE, StackPaths
from periphery.process import Emit, base_env, capture, note, run, shown

log = logging.getLogger(__name__)

UP_TIMEOUT = 600.0
PULL_TIMEOUT = 900.0
QUERY_TIMEOUT = 60.0
PROJECT_LABEL = "com.docker.compose.project"
JOINED = "joined env file"  # stands for the v1 file until it is written


@dataclass(frozen=True)
class Invocation:
    """One command of a deploy: its argv and where it runs (None: the agent's directory)."""

    what: str
    argv: list[str]
    cwd: Path | None


@dataclass(frozen=True)
class ComposePlan:
    pull: Invocation | None
    down: Invocation | None
    up: Invocation
    env_files: list[str]  # in order, as given (relative to the run directory, or absolute)
    joined: bool  # v1 with several env files: JOINED in argv stands for the agent's file


def compose_plan(
    compose: Sequence[str],
    project: str,
    files: Sequence[str],
    env_file: str,
    additional_env_files: Sequence[str],
    extra_args: Sequence[str],
    *,
    auto_pull: bool,
    destroy_before_deploy: bool,
    run_directory: Path,
    services: Sequence[str] = (),
    pull: bool = False,
) -> ComposePlan:
    """The commands of a deploy (nothing runs); ``env_file`` is the written env file ("");
    ``services``: only these (``--`` so that a name starting with ``-`` is no option)."""
    v1 = tuple(compose) == ("docker-compose",)
    ordered = env_files(env_file, additional_env_files)
    joined = v1 and len(ordered) > 1
    env_args: list[str] = []
    for path in [JOINED] if joined else ordered:
        env_args += ["--env-file", path]
    base = [*compose, "-p", project]
    for path in files:
        base += ["-f", path]
    base += env_args
    only = ["--", *services] if services else []
    pulling = Invocation("pull", [*base, "pull", *only], run_directory)
    down = None
    if destroy_before_deploy:
        down = (
            Invocation("down", [*base, "down"], run_directory)
            if v1
            else Invocation("down", [*compose, "-p", project, "down"], None)
        )
    up = Invocation("up", [*base, "up", "-d", *split_extra_args(extra_args), *only], run_directory)
    return ComposePlan(pulling if auto_pull or pull else None, down, up, ordered, joined)


async def _step(step: Invocation, env: dict[str, str], emit: Emit, time_limit: float) -> int:
    await note(emit, f"$ {shown(step.argv)}")
    try:
        done = await run(step.argv, emit=emit, time_limit=time_limit, cwd=step.cwd, env=env)
    except (CommandTimeout, CommandFailed) as exc:
        raise StackDeployFailed(str(exc)) from exc
    if done.returncode != 0:
        log.info("%s exited %s", shown(step.argv), done.returncode)
    return done.returncode


async def _images(base: list[str], workdir: Path, env: dict[str, str]) -> list[str]:
    """The images the project's services name (from ``compose config``, interpolated)."""
    done = await capture([*base, "config"], time_limit=QUERY_TIMEOUT, cwd=workdir, env=env)
    if done.returncode != 0:
        raise StackDeployFailed(
            "compose config failed: " + done.stderr.decode("utf-8", "replace").strip()
        )
    doc = yaml.safe_load(done.stdout) or {}
    services = doc.get("services") or {}
    return sorted(
        {str(s["image"]) for s in services.values() if isinstance(s, dict) and s.get("image")}
    )


async def _present_locally(image: str, env: dict[str, str]) -> bool:
    done = await capture(
        ["docker", "image", "inspect", "--format", "{{.Id}}", "--", image],
        time_limit=QUERY_TIMEOUT,
        env=env,
    )
    return done.returncode == 0


async def _pull(
    step: Invocation, env: dict[str, str], emit: Emit, required: bool, services: int
) -> None:
    if await _step(step, env, emit, PULL_TIMEOUT) == 0:
        return
    if required:
        raise StackDeployFailed(
            "compose pull failed: the newer images were not pulled (see the output above)"
        )
    assert step.cwd is not None
    base = step.argv[: len(step.argv) - 1 - (services + 1 if services else 0)]  # before "pull"
    images = await _images(base, step.cwd, env)
    missing = [image for image in images if not await _present_locally(image, env)]
    if missing:
        raise StackDeployFailed(
            "compose pull failed and these images are not present locally: " + ", ".join(missing)
        )
    await note(emit, "warning: compose pull failed; using the images present locally", "stderr")


def _resolve_joined(plan: ComposePlan, paths: StackPaths, target: str) -> ComposePlan:
    """v1: write the joined env file and put its path where :data:`JOINED` stands."""
    if not plan.joined:
        return plan
    dest = paths.directory.parent / STATE / "env" / f"{target}.env"
    joined = joined_env_file(dest, [paths.resolve(f, what="env file") for f in plan.env_files])

    def swap(step: Invocation | None) -> Invocation | None:
        if step is None:
            return None
        return Invocation(
            step.what, [str(joined) if a == JOINED else a for a in step.argv], step.cwd
        )

    up = swap(plan.up)
    assert up is not None
    return ComposePlan(swap(plan.pull), swap(plan.down), up, plan.env_files, True)


async def compose_up(
    paths: StackPaths,
    target: str,
    project: str,
    files: Sequence[str],
    env_file: str,
    additional_env_files: Sequence[str],
    extra_args: Sequence[str],
    env: Mapping[str, str],
    emit: Emit,
    *,
    auto_pull: bool,
    destroy_before_deploy: bool,
    make_networks: Sequence[str] = (),
    time_limit: float = UP_TIMEOUT,
    services: Sequence[str] = (),
    pull: bool = False,
) -> None:
    """Run :func:`compose_plan` in the stack's run directory. Raises
    :class:`StackDeployFailed` when a step exits non-zero, :class:`InvalidName`,
    :class:`ForbiddenPath`."""
    project_name(project)
    check_env(dict(env))
    for path in files:
        paths.resolve(path, what="file_paths")
    for path in additional_env_files:
        paths.resolve(path, what="additional_env_files")
    plan = compose_plan(
        await compose_command(),
        project,
        files,
        env_file,
        additional_env_files,
        extra_args,
        auto_pull=auto_pull,
        destroy_before_deploy=destroy_before_deploy,
        run_directory=paths.run_directory,
        services=services,
        pull=pull,
    )
    plan = _resolve_joined(plan, paths, target)
    penv = base_env(env)
    if make_networks:
        documents = read_stack_files([paths.resolve(f, what="file_paths") for f in files])
        await networks.ensure_networks(make_networks, documents, emit)
    if plan.pull is not None:
        await _pull(plan.pull, penv, emit, required=pull, services=len(services))
    if plan.down is not None and await _step(plan.down, penv, emit, time_limit) != 0:
        raise StackDeployFailed(
            f"failed to bring down the existing containers of {project!r} (compose down); stopping"
        )
    if await _step(plan.up, penv, emit, time_limit) != 0:
        raise StackDeployFailed(f"compose up of {project!r} failed (see the output above)")


async def compose_down(
    project: str,
    emit: Emit,
    time_limit: float = UP_TIMEOUT,
) -> None:
    """Take a project down (a stack removed from the resources): its containers and networks,
    found by the compose project label (no files needed, any Compose)."""
    project_name(project)
    penv = base_env()
    label = f"label={PROJECT_LABEL}={project}"
    for kind, listing, remove in (
        ("containers", ["docker", "ps", "-aq", "--filter", label], ["docker", "rm", "-f"]),
        (
            "networks",
            ["docker", "network", "ls", "-q", "--filter", label],
            ["docker", "network", "rm"],
        ),
    ):
        found = await capture(listing, time_limit=QUERY_TIMEOUT, env=penv)
        ids = found.stdout.decode().split()
        if found.returncode != 0:
            raise StackDeployFailed(f"cannot list {kind} of {project!r}")
        step = Invocation(kind, [*remove, *ids], None)
        if ids and await _step(step, penv, emit, time_limit) != 0:
            raise StackDeployFailed(f"cannot remove the {kind} of {project!r}")
