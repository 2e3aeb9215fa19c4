"""The rules of the house from DESIGN.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_protocol_imports_neither_core_nor_periphery() -> None:
    for path in sources("protocol"):
        assert not imported_packages(path) & {"core", "periphery"}, path


def test_periphery_never_imports_core() -> None:
    for path in sources("periphery"):
        assert "core" not in imported_packages(path), path


def test_core_imports_periphery_only_to_start_the_agent() -> None:
    importers = [p for p in sources("core") if "periphery" in imported_packages(p)]
    assert [p.relative_to(REPO).as_posix() for p in importers] == ["core/cli/periphery_cmd.py"]


DRIVERS = {"transport.py", "connect.py", "guard.py", "inmemory.py"}
"""The websocket drivers of ``protocol``; everything else in it is pure (bytes and time)."""


def test_only_the_drivers_do_io_in_protocol() -> None:
    for path in sources("protocol"):
        if path.name in DRIVERS:
            continue
        assert not imported_packages(path) & {"aiohttp", "socket", "asyncio", "anyio"}, path
