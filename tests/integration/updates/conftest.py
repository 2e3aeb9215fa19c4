from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.fixtures import IMAGE, DockerTestEnv, docker, docker_engine, docker_env
from tests.support.registry import Registry, registry_binary

__all__ = ["docker_engine", "docker_env", "images", "registry", "registry_storage"]


@pytest.fixture(scope="session")
def registry_storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-storage")


@pytest.fixture(scope="session")
def registry(
    tmp_path_factory: pytest.TempPathFactory, registry_storage: Path
) -> Iterator[Registry]:
    """One open registry for the session (tests use their own repository names)."""
    if registry_binary() is None:
        pytest.skip("no docker-registry: apt-get install docker-registry (tests/engine/setup.sh)")
    reg = Registry(tmp_path_factory.mktemp("registry"), registry_storage)
    yield reg
    reg.stop()


class Images:
    """Images built from the test image and pushed to the session's registry under the test's
    prefix; the ones built are removed at teardown."""

    def __init__(self, registry: Registry, env: DockerTestEnv) -> None:
        self.registry = registry
        self.env = env
        self.prefix = env.prefix
        self.built: list[str] = []

    def ref(self, name: str, tag: str = "1") -> str:
        return f"{self.registry.host}/{self.prefix}/{name}:{tag}"

    def push(self, name: str, version: str, tag: str = "1") -> str:
        """Build a new image of ``name`` (the test image with a label: a new config, so a new
        manifest digest), tag it ``REGISTRY/PREFIX/name:tag``, push it; its digest."""
        ref = self.ref(name, tag)
        dockerfile = f"FROM {IMAGE}\nLABEL stackward.test.version={version}\n"
        done = subprocess.run(
            ["docker", "build", "-q", "-t", ref, "-"],
            input=dockerfile,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        self.built.append(done.stdout.strip())
        pushed = docker("push", ref, timeout=120)
        digest = pushed.rsplit("digest: ", 1)[1].split()[0]
        assert digest.startswith("sha256:"), pushed
        return digest

    def cleanup(self) -> None:
        self.env.cleanup()  # the stacks first: an image a container runs cannot be removed
        if self.built:
            docker("rmi", "-f", *self.built, check=False)


@pytest.fixture
def images(docker_env: DockerTestEnv, registry: Registry) -> Iterator[Images]:
    made = Images(registry, docker_env)
    yield made
    made.cleanup()
