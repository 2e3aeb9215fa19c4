"""What the local Docker CLI can do, found out once per process (``probe``), and the names it
accepts.

Users have Debian 12's ``docker.io`` (CLI 20.10, API 1.41, with ``docker-compose`` v1 as the only
Compose Debian packages) or Docker CE's current CLI (27/28, with the v2 plugin). What differs,
each detected rather than assumed, and each written down once here (``FEATURES``):

- Compose: the v2 plugin (``docker compose``) when it answers ``version``, else ``docker-compose``
  (v1); neither is a clear error naming what to install.
- ``docker stack deploy --detach``: CLIs from 26.0 have it (and warn when it is not given);
  older ones reject it.
- Swarm jobs (``deploy.mode: replicated-job`` / ``global-job``) in a stack file: the CLI reads
  them from 23.0 (docker/cli#2907); 20.10 stops with "Unknown mode: replicated-job". A deploy of
  such a file on an older CLI fails before it starts, saying which service and which minimum.
- ``docker stack config``: from 23.0 (not used by the agent; the tests check for it).

The agent logs what it found once at start (``Capabilities.describe``), a warning for each
feature its CLI lacks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from periphery.exceptions import CommandFailed, InvalidName, StackDeployFailed
from periphery.process import base_env, capture

log = logging.getLogger(__name__)

QUERY_TIMEOUT = 30.0

# compose v2 requires this for project names (v1 would silently strip other characters).
_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# a swarm stack namespace becomes part of service, network and config names.
_STACK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_VERSION = re.compile(r"(\d+)\.(\d+)")

INSTALL_DOCKER = "install docker.io (Debian) or docker-ce-cli (Docker CE)"
INSTALL_COMPOSE = "install docker-compose (Debian) or docker-compose-plugin (Docker CE)"


@dataclass(frozen=True)
class Feature:
    name: str
    minimum: tuple[int, int]
    what: str

    def needs(self) -> str:
        return f"{self.what} needs docker CLI {self.minimum[0]}.{self.minimum[1]} or newer"


STACK_JOBS = Feature(
    "stack_jobs", (23, 0), "a stack file with swarm jobs (deploy.mode: replicated-job/global-job)"
)
STACK_DETACH = Feature("stack_detach", (26, 0), "docker stack deploy --detach")
STACK_CONFIG = Feature("stack_config", (23, 0), "docker stack config")
FEATURES = (STACK_JOBS, STACK_DETACH, STACK_CONFIG)
# Features a deploy may need, warned about at start when missing (--detach is only an option).
_WARN = (STACK_JOBS,)
JOB_MODES = frozenset({"replicated-job", "global-job"})


def parse_version(text: str) -> tuple[int, int] | None:
    """``(major, minor)`` of ``20.10.24+dfsg1``, ``28.2.2``, ``v2.29.1``; None if unreadable."""
    match = _VERSION.search(text)
    return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True)
class Capabilities:
    """The local docker CLI: its version ("" when there is none) and what it can do."""

    cli_version: str = ""
    compose: tuple[str, ...] = ()
    compose_version: str = ""

    @property
    def cli(self) -> tuple[int, int] | None:
        return parse_version(self.cli_version)

    def has(self, feature: Feature) -> bool:
        version = self.cli
        return version is not None and version >= feature.minimum

    def missing(self) -> list[Feature]:
        return [f for f in _WARN if not self.has(f)]

    def describe(self) -> list[tuple[int, str]]:
        """What to log at start: ``(level, message)`` pairs, one per finding."""
        if not self.cli_version:
            return [
                (
                    logging.WARNING,
                    f"no docker CLI on PATH: every deploy will fail; {INSTALL_DOCKER}",
                )
            ]
        compose = (
            f"{' '.join(self.compose)} {self.compose_version}".strip() if self.compose else "none"
        )
        out = [(logging.INFO, f"docker CLI {self.cli_version}; compose: {compose}")]
        if not self.compose:
            out.append(
                (logging.WARNING, f"no docker compose: Compose stacks will fail; {INSTALL_COMPOSE}")
            )
        for feature in self.missing():
            out.append(
                (
                    logging.WARNING,
                    f"docker CLI {self.cli_version}: {feature.needs()}; stacks that use it will "
                    "fail to deploy",
                )
            )
        return out

    def require_compose(self) -> tuple[str, ...]:
        if not self.cli_version:
            raise StackDeployFailed(f"no docker CLI on this host: {INSTALL_DOCKER}")
        if not self.compose:
            raise StackDeployFailed(
                "neither `docker compose` (v2 plugin) nor `docker-compose` (v1) is installed: "
                + INSTALL_COMPOSE
            )
        return self.compose

    def check_stack_files(self, documents: Iterable[tuple[str, object]]) -> None:
        """Refuse, before anything runs, a stack file that needs what this CLI has not."""
        if not self.cli_version:
            raise StackDeployFailed(f"no docker CLI on this host: {INSTALL_DOCKER}")
        if self.has(STACK_JOBS):
            return
        for filename, doc in documents:
            services = doc.get("services") if isinstance(doc, dict) else None
            if not isinstance(services, dict):
                continue
            for service, spec in services.items():
                deploy = spec.get("deploy") if isinstance(spec, dict) else None
                mode = deploy.get("mode") if isinstance(deploy, dict) else None
                if mode in JOB_MODES:
                    raise StackDeployFailed(
                        f"{filename}: service {service!r} has deploy.mode {mode}: "
                        f"{STACK_JOBS.needs()} (this host has {self.cli_version}); "
                        "install Docker CE's CLI, or make it a replicated service"
                    )


_probed: Capabilities | None = None


async def _answer(argv: list[str]) -> str | None:
    """The command's stdout when it exits 0, else None."""
    try:
        done = await capture(argv, time_limit=QUERY_TIMEOUT, env=base_env())
    except CommandFailed:
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", "replace").strip()


async def probe(*, again: bool = False) -> Capabilities:
    """Ask the CLI once per process (``again`` asks anew)."""
    global _probed
    if _probed is not None and not again:
        return _probed
    # `docker --version` asks no engine: an engine that is down does not hide the CLI.
    match = re.match(r"Docker version ([^,\s]+)", await _answer(["docker", "--version"]) or "")
    cli = match[1] if match else ""
    compose: tuple[str, ...] = ()
    compose_version = ""
    for candidate in (("docker", "compose"), ("docker-compose",)):
        if candidate[0] == "docker" and not cli:
            continue
        short = await _answer([*candidate, "version", "--short"])
        if short is not None:
            compose, compose_version = candidate, short.splitlines()[0] if short else ""
            break
    _probed = Capabilities(cli, compose, compose_version)
    return _probed


def log_capabilities(caps: Capabilities) -> None:
    for level, message in caps.describe():
        log.log(level, "%s", message)


def read_stack_files(paths: Iterable[Path]) -> list[tuple[str, object]]:
    """The YAML documents of ``paths`` (unreadable ones left for docker to report)."""
    out: list[tuple[str, object]] = []
    for path in paths:
        try:
            out.append((path.name, yaml.safe_load(path.read_text())))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
    return out


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


async def compose_command() -> tuple[str, ...]:
    """``("docker", "compose")`` or ``("docker-compose",)``; StackDeployFailed when neither."""
    return (await probe()).require_compose()
