"""The table of fields stackward reads and does not act on (core/resources/support.py), and
the warnings validate gives from it: one per field written, naming it and what happens instead,
from the table only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from core.resources import check, support
from core.resources import schema as S
from core.resources.loader import load_text
from core.resources.models import CONFIG_TYPES, SystemCommand
from core.resources.summary import summarise

SUPPORT_PY = Path(support.__file__)


def test_every_key_names_a_real_field_and_is_unique() -> None:
    keys = [e.key for e in support.INERT]
    assert len(keys) == len(set(keys))
    for e in support.INERT:
        if e.key == "procedure":
            continue
        fields = CONFIG_TYPES[e.kind].__struct_fields__
        assert e.path[0] in fields, e.key
        assert e.path[0] in S.CONFIG_KEYS[e.kind], e.key
        if len(e.path) > 1:
            assert e.path[1] in SystemCommand.__struct_fields__, e.key
        assert e.when in ("set", "true", "false", "any")
        assert not e.only or e.only in support.ONLY, e.key
        if e.pattern:
            re.compile(e.pattern)
        assert e.instead and not e.instead.endswith("."), e.key


def test_one_entry_per_line() -> None:
    """So that "komodo" removing an entry and anyone adding one merge without conflicts."""
    lines = SUPPORT_PY.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("INERT: Final"))
    end = next(i for i in range(start, len(lines)) if lines[i] == ")")
    body = [line for line in lines[start + 1 : end] if line.strip()]
    assert len(body) == len(support.INERT)
    for line in body:
        assert line.startswith('    Inert("') and re.search(r"\),(  # noqa: E501)?$", line), line


# -- a file that writes one field so that its entry applies ---------------------------------

_BASE = {
    "stack": 'server = "h"\nrepo = "o/r"\n',
    "server": 'address = "wss://h:8120"\n',
    "swarm": 'servers = ["h"]\n',
    "repo": 'repo = "o/r"\n',
    "resource_sync": 'repo = "o/r"\nresource_path = ["r.toml"]\n',
}
_SPECIAL = {
    # values where the difference shows (the entry's pattern or condition)
    "repo.on_clone": 'on_clone = { command = "make" }',
    "repo.on_pull": 'on_pull = { command = "make" }',
    "repo.environment": 'environment = "A=1"',
    "repo.env_file_path": 'env_file_path = "x.env"',
    "server.maintenance_windows": 'maintenance_windows = [{ name = "w", hour = 3 }]',
    "swarm.maintenance_windows": 'maintenance_windows = [{ name = "w", hour = 3 }]',
}
_BY_CODE = {S.STR: '"x"', S.STRLIST: '["x"]', S.NUMBER: "50.0", S.ENV: '"A=1"', S.BOOL: "true"}
_NOT_APPLYING = {
    # values that ask for what stackward does anyway
}


def _written(e: support.Inert, applying: bool) -> str | None:
    """The config line(s) writing ``e``'s field, or None when no value could (not) apply."""
    if not applying:
        if e.key in _NOT_APPLYING:
            return _NOT_APPLYING[e.key]
        if e.when == "true":
            return f"{e.path[0]} = false"
        if e.when == "false":
            return f"{e.path[0]} = true"
        return None
    if e.key in _SPECIAL:
        return _SPECIAL[e.key]
    if e.when in ("true", "false"):
        return f"{e.path[0]} = {e.when}"
    return f"{e.path[0]} = {_BY_CODE[S.CONFIG_KEYS[e.kind][e.path[0]]]}"


def _file(e: support.Inert, line: str) -> str:
    base = _BASE[e.kind]
    if e.only == "no_repository":
        base = 'server = "h"\n'
    return f'[[{e.kind}]]\nname = "it"\n[{e.kind}.config]\n{base}{line}\n'


FIELD_ENTRIES = [e for e in support.INERT if e.path]


@pytest.mark.parametrize("entry", FIELD_ENTRIES, ids=lambda e: e.key)
def test_each_field_written_is_one_warning_at_its_line(entry: support.Inert) -> None:
    line = _written(entry, applying=True)
    assert line is not None
    text = _file(entry, line)
    rs = check(load_text(text, "F"))
    hits = [f for f in rs.findings if f.code == "inert" and f.key == entry.key]
    assert len(hits) == 1, [f.format() for f in rs.findings]
    field = entry.path[-1]
    want = next(
        n for n, t in enumerate(text.splitlines(), start=1) if re.match(rf"\s*{entry.path[0]}\b", t)
    )
    assert hits[0].line == want
    assert hits[0].severity == "warning"
    assert f'{entry.kind} "it": ' in hits[0].message
    assert field in hits[0].message and entry.instead in hits[0].message
    assert rs.inert[(entry.kind, "it")] == [entry.key]


# Entries where some value asks for what stackward does anyway ("any" ones have none).
NEGATIVE_ENTRIES = [e for e in FIELD_ENTRIES if _written(e, applying=False) is not None]


@pytest.mark.parametrize("entry", NEGATIVE_ENTRIES, ids=lambda e: e.key)
def test_a_value_that_asks_for_what_stackward_does_is_no_warning(entry: support.Inert) -> None:
    line = _written(entry, applying=False)
    assert line is not None
    rs = check(load_text(_file(entry, line), "F"))
    assert not [f for f in rs.findings if f.key == entry.key], [f.format() for f in rs.findings]


def test_a_procedure_is_not_inert_and_ui_decoration_is_not() -> None:
    """Procedures run now (core/automation): the table has no "procedure" entry."""
    text = """[[stack]]
name = "web"
template = true
deploy = true
[stack.config]
server = "h"
repo = "o/r"
links = ["https://example.com"]

[[procedure]]
name = "nightly"
"""
    rs = check(load_text(text, "F"))
    keys = {(f.line, f.key) for f in rs.findings if f.code == "inert"}
    assert keys == set() and "procedure" not in support.BY_KEY


def test_warnings_come_from_the_table_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry removed (the agent acts on the field now) is no warning any more, with no
    other change: the loader has no list of its own."""
    text = _file(support.BY_KEY["stack.run_build"], "run_build = true")
    inert = [f.key for f in check(load_text(text, "F")).findings if f.code == "inert"]
    assert inert == ["stack.run_build"]
    kept = tuple(e for e in support.INERT if e.key != "stack.run_build")
    monkeypatch.setattr(support, "INERT", kept)
    monkeypatch.setattr(support, "BY_KEY", {e.key: e for e in kept})
    rs = check(load_text(text, "F"))
    assert [f for f in rs.findings if f.code == "inert"] == [] and rs.inert == {}
    assert rs.resources[("stack", "it")].config.run_build is True


def test_summary_names_the_stacks_that_differ_and_why() -> None:
    text = """[[server]]
name = "off"
[server.config]
enabled = false

[[stack]]
name = "same"
[stack.config]
server = "h"
repo = "o/r"
links = ["https://example.com"]

[[stack]]
name = "build"
[stack.config]
server = "h"
repo = "o/r"
run_build = true

[[stack]]
name = "on-off"
[stack.config]
server = "off"
repo = "o/r"

[[stack]]
name = "broken"
[stack.config]
server = "h"
repo = "o/r"
run_directory = "../out"
"""
    rs = check(load_text(text, "F"))
    [summary] = summarise(rs)
    assert summary.format() == (
        "F: 1 stack deploys as Komodo would, 3 differ: build (run_build),"
        " on-off (server.enabled), broken (error)"
    )


def _defaults_match_komodo() -> list[tuple[str, str, Any]]:
    """Komodo's defaults for fields whose default decides whether a value "asks" for
    something (client/core/rs/src/entities/{stack,server}.rs: default_* functions)."""
    return [
        ("stack", "env_file_path", ".env"),
        ("stack", "send_alerts", True),
        ("stack", "auto_pull", True),
        ("server", "auto_prune", True),
        ("server", "enabled", False),
        ("server", "insecure_tls", True),
    ]


@pytest.mark.parametrize(("kind", "field", "value"), _defaults_match_komodo())
def test_model_defaults_are_komodos(kind: str, field: str, value: Any) -> None:
    assert msgspec.to_builtins(getattr(CONFIG_TYPES[kind](), field)) == value
