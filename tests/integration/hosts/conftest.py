from __future__ import annotations

from tests.engine.fixtures import docker_engine, docker_env
from tests.engine.second_host import second_host

__all__ = ["docker_engine", "docker_env", "second_host"]
