"""Fixtures for the tests against the real Docker engine.

The engine fixtures live in ``tests/engine/fixtures.py`` (``docker_engine``, ``docker_env``);
they are loaded from that file here so that ``tests`` need not be an importable package.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_NAME = "stackward_tests_engine_fixtures"


def _load() -> object:
    if _NAME not in sys.modules:
        path = Path(__file__).resolve().parents[2] / "engine" / "fixtures.py"
        spec = importlib.util.spec_from_file_location(_NAME, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


_fixtures = _load()
docker_engine = _fixtures.docker_engine  # type: ignore[attr-defined]
docker_env = _fixtures.docker_env  # type: ignore[attr-defined]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiodocker needs asyncio


class Recorder:
    """An ``emit`` that keeps every (stream, line) it is given."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, bytes]] = []

    async def __call__(self, stream: str, line: bytes) -> None:
        assert stream in ("stdout", "stderr")
        assert line.endswith(b"\n")
        self.lines.append((stream, line))

    def text(self) -> str:
        return b"".join(line for _, line in self.lines).decode("utf-8", "replace")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
