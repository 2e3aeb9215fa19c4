"""Komodo's stack executions on a Compose project, as its core and periphery run them
(core ``stack/execute.rs``: ``StartStack``, ``StopStack``, ``RestartStack``, ``PauseStack``,
``UnpauseStack``, ``DestroyStack``; periphery ``api/compose.rs``: ``ComposeExecution``,
``ComposePull``)::

    COMPOSE -p PROJECT start|stop|restart|pause|unpause [SERVICE...]
    COMPOSE -p PROJECT stop [--timeout N] [SERVICE...]
    COMPOSE -p PROJECT down [--timeout N] [--remove-orphans] [SERVICE...]
    COMPOSE -p PROJECT -f FILE... [--env-file ENV...] pull [SERVICE...]    (in the run directory)

Komodo runs the first four without files: Compose v2 finds a project by its label. They run here
in an empty directory of the agent's (so no compose file nearby is picked up). Compose v1
(``docker-compose``) finds a project only through its files, so with v1 every action gets the
stack's files and env files in its run directory, as the last deploy wrote them (a stack never
deployed on this host has none: the action is refused, saying so). ``pull`` always does, as
Komodo's ``ComposePull``. :func:`control_plan` is pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from periphery.exceptions import DeployError, InvalidName, StackDeployFailed
from periphery.ops.compose import PULL_TIMEOUT, UP_TIMEOUT
from periphery.ops.dockercli import compose_command, project_name
from periphery.ops.envfile import env_files
from periphery.paths import STATE, stack_paths
from periphery.process import Emit, base_env, note, run, shown
from protocol.messages import StackControl

ACTIONS = ("start", "stop", "restart", "pause", "unpause", "pull", "down")
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class ControlPlan:
    argv: list[str]
    needs_files: bool  # runs in the run directory with the stack's files


def control_plan(
    compose: Sequence[str],
    project: str,
    action: str,
    services: Sequence[str],
    *,
    stop_time: int | None = None,
    remove_orphans: bool = False,
    files: Sequence[str] = (),
    env_args: Sequence[str] = (),
) -> ControlPlan:
    """The command (nothing runs). ``files``/``env_args`` are used when the action needs the
    files (``pull``, or any action with Compose v1)."""
    if action not in ACTIONS:
        raise InvalidName(f"stack action {action!r} is not one of {', '.join(ACTIONS)}")
    for service in services:
        if not _SERVICE.fullmatch(service):
            raise InvalidName(f"service {service!r}: letters, digits, '_', '.', '-'")
    if stop_time is not None and not 0 <= stop_time <= 86_400:
        raise InvalidName(f"stop_time {stop_time}: seconds from 0 to 86400")
    v1 = tuple(compose) == ("docker-compose",)
    needs_files = action == "pull" or v1
    argv = [*compose, "-p", project]
    if needs_files:
        for path in files:
            argv += ["-f", path]
        argv += env_args
    argv.append(action)
    if stop_time is not None and action in ("stop", "down"):
        argv += ["--timeout", str(stop_time)]
    if remove_orphans and action == "down":
        argv.append("--remove-orphans")
    argv += services
    return ControlPlan(argv, needs_files)


async def stack_control(root: Path, command: StackControl, emit: Emit) -> None:
    """Run the action. Raises :class:`StackDeployFailed` when it exits non-zero,
    :class:`InvalidName`, :class:`ForbiddenPath`, :class:`DeployError`."""
    project_name(command.project)
    compose = await compose_command()
    plan = control_plan(
        compose,
        command.project,
        command.action,
        command.services,
        stop_time=command.stop_time,
        remove_orphans=command.remove_orphans,
    )
    cwd: Path
    if plan.needs_files:
        if not command.target:
            raise DeployError(f"{command.action}: the stack's files are not known to this agent")
        paths = stack_paths(root, command.target, command.source, command.run_directory)
        if not paths.run_directory.is_dir():
            raise DeployError(
                f"{command.target!r} has not been deployed on this host (no"
                f" {paths.run_directory}): compose {command.action} needs its files"
            )
        files = command.files or ["compose.yaml"]
        for path in files:
            paths.resolve(path, what="file_paths")
        ordered = env_files(command.env_file_path, command.env_files)
        present = [p for p in ordered if paths.resolve(p, what="env file").is_file()]
        if tuple(compose) == ("docker-compose",) and len(present) > 1:
            joined = root / STATE / "env" / f"{command.target}.env"  # what the deploy wrote
            present = [str(joined)] if joined.is_file() else present[-1:]
        env_args: list[str] = []
        for path in present:
            env_args += ["--env-file", path]
        plan = control_plan(
            compose,
            command.project,
            command.action,
            command.services,
            stop_time=command.stop_time,
            remove_orphans=command.remove_orphans,
            files=files,
            env_args=env_args,
        )
        cwd = paths.run_directory
    else:
        cwd = root / STATE / "empty"
        cwd.mkdir(parents=True, exist_ok=True)
    await note(emit, f"$ {shown(plan.argv)}")
    limit = PULL_TIMEOUT if command.action == "pull" else UP_TIMEOUT
    done = await run(plan.argv, emit=emit, time_limit=limit, cwd=cwd, env=base_env())
    if done.returncode != 0:
        raise StackDeployFailed(
            f"compose {command.action} of {command.project!r} exited {done.returncode}"
        )
