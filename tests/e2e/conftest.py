from __future__ import annotations

from tests.engine.fixtures import docker_engine

__all__ = ["docker_engine"]
