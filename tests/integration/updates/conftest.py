from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.fixtures import docker_engine, docker_env
from tests.support.registry import Registry, registry_binary

__all__ = ["docker_engine", "docker_env", "registry", "registry_storage"]


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
