from __future__ import annotations

from tests.engine.fixtures import docker_engine, docker_env

__all__ = ["docker_engine", "docker_env"]
