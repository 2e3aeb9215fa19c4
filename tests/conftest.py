from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import KeyPair, Periphery, make_key


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def core_keys(tmp_path: Path) -> KeyPair:
    return make_key(tmp_path / "core.key")


@pytest.fixture
def periphery_factory(tmp_path: Path, core_keys: KeyPair) -> Iterator[type]:
    """``start(**config) -> Periphery``: real agent processes, stopped after the test."""
    started: list[Periphery] = []

    class Factory:
        @staticmethod
        def start(name: str = "p1", **config: object) -> Periphery:
            periphery = Periphery(tmp_path / name, core_keys, **config)
            started.append(periphery)
            periphery.start_and_wait()
            return periphery

        @staticmethod
        def make(name: str = "p1", **config: object) -> Periphery:
            periphery = Periphery(tmp_path / name, core_keys, **config)
            started.append(periphery)
            return periphery

    yield Factory
    for periphery in started:
        periphery.stop()
