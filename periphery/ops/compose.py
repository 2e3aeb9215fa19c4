"""``docker compose -p NAME -f FILE… up -d --remove-orphans`` (or ``docker-compose`` v1).

What reaches the containers: only what the compose files give them (``environment:``,
``env_file:``). The stack's environment is used for ``${VAR}`` interpolation in the files: it is
written to ``.env`` in the run directory (passed as ``--env-file``) and also set in the process
environment of the compose command, which takes precedence, so values arrive exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from periphery.exceptions import CommandFailed, CommandTimeout, StackDeployFailed
from periphery.ops.dockercli import compose_command, project_name
from periphery.ops.envfile import check_env, write_env_file
from periphery.ops.paths import resolve_inside
from periphery.ops.process import Emit, base_env, capture, note, run, shown

log = logging.getLogger(__name__)

UP_TIMEOUT = 600.0
PULL_TIMEOUT = 900.0
QUERY_TIMEOUT = 60.0
PROJECT_LABEL = "com.docker.compose.project"


async def _base_argv(
    project: str, files: Sequence[str], workdir: Path, env: Mapping[str, str]
) -> list[str]:
    paths = [resolve_inside(workdir, f) for f in files]
    argv = [*await compose_command(), "-p", project]
    for path in paths:
        argv += ["-f", str(path)]
    if env:
        argv += ["--env-file", str(write_env_file(workdir, env))]
    return argv


async def _step(
    argv: list[str], workdir: Path, env: dict[str, str], emit: Emit, time_limit: float
) -> int:
    await note(emit, f"$ {shown(argv)}")
    try:
        done = await run(argv, emit=emit, time_limit=time_limit, cwd=workdir, env=env)
    except (CommandTimeout, CommandFailed) as exc:
        raise StackDeployFailed(str(exc)) from exc
    if done.returncode != 0:
        log.info("%s exited %s", shown(argv), done.returncode)
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


async def _pull(base: list[str], workdir: Path, env: dict[str, str], emit: Emit) -> None:
    if await _step([*base, "pull"], workdir, env, emit, PULL_TIMEOUT) == 0:
        return
    images = await _images(base, workdir, env)
    missing = [image for image in images if not await _present_locally(image, env)]
    if missing:
        raise StackDeployFailed(
            "compose pull failed and these images are not present locally: " + ", ".join(missing)
        )
    await note(emit, "warning: compose pull failed; using the images present locally", "stderr")


async def compose_up(
    project: str,
    files: Sequence[str],
    workdir: Path,
    env: Mapping[str, str],
    auto_pull: bool,
    emit: Emit,
    time_limit: float = UP_TIMEOUT,
) -> None:
    """Pull (when ``auto_pull``) then ``up -d --remove-orphans`` the project in ``workdir``.

    ``files`` are relative to ``workdir`` (confined to it). Raises :class:`StackDeployFailed`
    when a step exits non-zero, :class:`InvalidName`, :class:`ForbiddenPath`.
    """
    project_name(project)
    check_env(env)
    base = await _base_argv(project, files, workdir, env)
    penv = base_env(env)
    if auto_pull:
        await _pull(base, workdir, penv, emit)
    argv = [*base, "up", "-d", "--remove-orphans"]
    if await _step(argv, workdir, penv, emit, time_limit) != 0:
        raise StackDeployFailed(f"compose up of {project!r} failed (see the output above)")


async def compose_down(
    project: str,
    emit: Emit,
    files: Sequence[str] = (),
    workdir: Path | None = None,
    time_limit: float = UP_TIMEOUT,
) -> None:
    """Take the project down: ``compose down --remove-orphans`` with its files when given,
    else remove its containers and networks by the compose project label."""
    project_name(project)
    penv = base_env()
    if files and workdir is not None:
        base = await _base_argv(project, files, workdir, {})
        if await _step([*base, "down", "--remove-orphans"], workdir, penv, emit, time_limit) != 0:
            raise StackDeployFailed(f"compose down of {project!r} failed")
        return
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
        if ids and await _step([*remove, *ids], Path("/"), penv, emit, time_limit) != 0:
            raise StackDeployFailed(f"cannot remove the {kind} of {project!r}")
