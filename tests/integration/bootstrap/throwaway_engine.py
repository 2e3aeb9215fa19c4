"""A throwaway Docker engine of the test's own, in a network namespace (a plugin module).

``throwaway_engine`` starts a second ``dockerd`` (its own data and exec roots under a short
directory in /tmp, a unix socket there, ``--bridge none --iptables=false``) inside a new
network namespace entered with ``nsenter``, loads the test image into it from the shared
engine, and yields its ``DOCKER_HOST``. Its swarm starts inactive, and whatever the test does
to it (``docker swarm init``, secrets, stacks) touches nobody else. At teardown the engine,
every process left in the namespace, its mounts, its directory and the namespace go.

Skips, with the reason, where it cannot be made (not root, no ``ip``/``nsenter``/``dockerd``,
or the engine does not come up).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.fixtures import Engine
from tests.engine.netns import EngineDidNotStart, NetnsDockerd, missing_tools


@dataclass(frozen=True)
class ThrowawayEngine:
    engine: NetnsDockerd
    image: str

    @property
    def host(self) -> str:  # DOCKER_HOST
        return self.engine.docker_host

    @property
    def root(self) -> Path:
        return self.engine.workdir

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def answers(self) -> bool:
        return self.engine.answers()

    def docker(self, *args: str, check: bool = True, stdin: bytes | None = None) -> str:
        return self.engine.docker(*args, check=check, stdin=stdin)


@pytest.fixture
def throwaway_engine(docker_engine: Engine) -> Iterator[ThrowawayEngine]:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    name = f"swb{secrets.token_hex(3)}"
    engine = NetnsDockerd(name, Path("/tmp") / name)
    try:
        try:
            engine.create_namespace()
        except AssertionError as exc:
            pytest.skip(f"cannot make a network namespace: {exc}")
        try:
            engine.start()
        except EngineDidNotStart as exc:
            pytest.skip(str(exc))
        engine.load_image(docker_engine.image)
        yield ThrowawayEngine(engine, docker_engine.image)
    finally:
        if engine.proc is not None and engine.proc.poll() is None:
            engine.docker("swarm", "leave", "--force", check=False)
        engine.remove()
