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


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports at module level (``TYPE_CHECKING`` blocks
    and imports inside functions are not cycles at import time, but they are counted too: the
    rule is no cycle at all)."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in known}


def test_no_import_cycle_among_core_modules() -> None:
    """One composition root wires the core; its parts get what they need passed in and never
    import back what imports them (issue 11: drift, the listener and the poller once reached
    back into the runtime)."""
    paths = {_module_of(p): p for p in sources("core")}
    known = set(paths)
    graph = {m: _imports(p, known) - {m} for m, p in paths.items()}
    # a package's __init__ that only re-exports is not a module of its own for this rule
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return visiting[visiting.index(module) :] + [module]
        if module in done:
            return None
        visiting.append(module)
        for nxt in sorted(graph.get(module, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        assert cycle is None, "import cycle: " + " -> ".join(cycle)
