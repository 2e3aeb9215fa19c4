from __future__ import annotations

from tests.engine.fixtures import docker_engine, docker_env
from tests.integration.bootstrap.throwaway_engine import throwaway_engine

__all__ = ["docker_engine", "docker_env", "throwaway_engine"]
