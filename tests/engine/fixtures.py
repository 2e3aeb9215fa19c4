"""Pytest fixtures for tests against the real Docker engine (a plugin module).

- ``docker_engine`` (session): runs ``tests/engine/setup.sh`` once; skips with the reason when
  no engine answers and one cannot be set up here (not root, no apt-get), or when
  ``STACKWARD_SKIP_DOCKER=1``.
- ``docker_env`` (function): a :class:`DockerTestEnv` with a unique prefix (``swtest<hex>``);
  at teardown it removes the stacks, compose projects, services, containers, networks and
  volumes whose names start with that prefix, and nothing else.

Registered by ``tests/integration/docker/conftest.py``; other suites can load it the same way
(or with ``pytest_plugins`` when ``tests`` is importable).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

SETUP = Path(__file__).resolve().with_name("setup.sh")
IMAGE = "stackward-test/busybox:1"
SETUP_TIMEOUT = 600
CLI_TIMEOUT = 60
CLEANUP_DEADLINE = 30.0


@dataclass(frozen=True)
class Engine:
    """The engine the tests run against."""

    server_version: str
    image: str = IMAGE


def docker(*args: str, check: bool = True, timeout: float = CLI_TIMEOUT) -> str:
    """Run the docker CLI; its stdout (stripped). ``check``: fail on a non-zero exit."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def file_in_container(pid: str | int, path: str) -> str | None:
    """A file as the container whose main process is ``pid`` sees it (None when missing),
    read through ``/proc/PID/root``. Not ``docker exec``: an engine started inside a chroot
    (the fresh Debian of shared/tools/fresh-debian) runs exec'd commands outside the container
    (seen there: ``docker exec C cat /proc/1/cmdline`` printed the host's init)."""
    try:
        return (Path(f"/proc/{int(pid)}/root") / path.lstrip("/")).read_text().strip()
    except (FileNotFoundError, NotADirectoryError, ProcessLookupError, ValueError):
        return None


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _can_set_up() -> str | None:
    """None when setup.sh may install and start an engine here, else why not."""
    if os.geteuid() != 0:
        return "no Docker engine answers and not running as root (tests/engine/setup.sh needs root)"
    if shutil.which("apt-get") is None:
        return "no Docker engine answers and no apt-get to install one"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> Engine:
    if os.environ.get("STACKWARD_SKIP_DOCKER") == "1":
        pytest.skip("STACKWARD_SKIP_DOCKER=1")
    if not _engine_answers():
        reason = _can_set_up()
        if reason:
            pytest.skip(reason)
    done = subprocess.run(
        ["bash", str(SETUP)], capture_output=True, text=True, timeout=SETUP_TIMEOUT, check=False
    )
    if done.returncode == 2:
        pytest.skip(done.stderr.strip())
    if done.returncode != 0:
        pytest.fail(f"tests/engine/setup.sh failed ({done.returncode}):\n{done.stderr}")
    return Engine(server_version=docker("version", "--format", "{{.Server.Version}}"))


@dataclass
class DockerTestEnv:
    """Names for one test's Docker objects, and their removal."""

    engine: Engine
    prefix: str

    @property
    def image(self) -> str:
        return self.engine.image

    def name(self, suffix: str) -> str:
        """``<prefix>-<suffix>``: a valid stack and compose project name owned by this test."""
        return f"{self.prefix}-{suffix}"

    def docker(self, *args: str, check: bool = True) -> str:
        return docker(*args, check=check)

    def read_file(self, container: str, path: str) -> str | None:
        """``path`` inside the running ``container`` (see ``file_in_container``)."""
        return file_in_container(docker("inspect", "--format", "{{.State.Pid}}", container), path)

    def _mine(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if n.startswith(self.prefix)]

    def cleanup(self) -> None:
        """Remove what carries the prefix; wait (bounded) until the swarm let go of it."""
        stacks = self._mine(docker("stack", "ls", "--format", "{{.Name}}", check=False).split())
        for stack in stacks:
            docker("stack", "rm", stack, check=False)
        services = self._mine(docker("service", "ls", "--format", "{{.Name}}", check=False).split())
        if services:
            docker("service", "rm", *services, check=False)
        rows = docker(
            "ps",
            "-a",
            "--format",
            '{{.ID}} {{.Names}} {{.Label "com.docker.compose.project"}}',
            check=False,
        ).splitlines()
        containers = [
            row.split()[0]
            for row in rows
            if any(part.startswith(self.prefix) for part in row.split()[1:])
        ]
        if containers:
            docker("rm", "-f", *containers, check=False)
        deadline = time.monotonic() + CLEANUP_DEADLINE
        while time.monotonic() < deadline:
            networks = self._mine(
                docker("network", "ls", "--format", "{{.Name}}", check=False).split()
            )
            left = self._mine(docker("service", "ls", "--format", "{{.Name}}", check=False).split())
            if networks and not left:
                docker("network", "rm", *networks, check=False)
            if not networks and not left:
                break
            time.sleep(0.25)
        else:
            log.warning("docker objects of %s still present after cleanup", self.prefix)
        volumes = self._mine(docker("volume", "ls", "--format", "{{.Name}}", check=False).split())
        if volumes:
            docker("volume", "rm", "-f", *volumes, check=False)

    def service_json(self, service: str) -> dict[str, object]:
        data: list[dict[str, object]] = json.loads(docker("service", "inspect", service))
        return data[0]


@pytest.fixture
def docker_env(docker_engine: Engine) -> Iterator[DockerTestEnv]:
    env = DockerTestEnv(docker_engine, f"swtest{secrets.token_hex(3)}")
    try:
        yield env
    finally:
        env.cleanup()
