"""A stack's ``environment`` read as Komodo reads it. Pure.

Komodo keeps ``environment`` as the string written, with a final newline added; the array form
``[{variable, value}]`` becomes ``"  VARIABLE = value"`` lines (``env_vars_deserializer`` in
``client/core/rs/src/deserializers/environment.rs``). At deploy it splits the string with
``parse_key_value_list`` (``client/core/rs/src/parsers.rs``): each line trimmed; empty lines
and lines starting with ``#`` or ``//`` skipped; an end-of-line comment from `` #`` on dropped;
leading ``-`` (a YAML list) dropped; key and value split at the first ``=`` or ``:`` (a line
with neither fails the deploy); quotes around key *and* value (``"KEY=value"``) dropped, other
quotes kept. This module gives the lines with their index in the value, so that a problem is
reported at the file line where it is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

QUOTES: Final = "\"'"
_SEPARATOR = re.compile(r"[=:]")


class EnvLine(msgspec.Struct, frozen=True):
    """One assignment: its index among the value's lines (0-based), key and value as Komodo
    has them (value quotes kept)."""

    index: int
    variable: str
    value: str


class EnvProblem(msgspec.Struct, frozen=True):
    """A line Komodo cannot read (its deploy fails on it)."""

    index: int
    text: str


def parse_lines(text: str) -> list[EnvLine | EnvProblem]:
    """Komodo's ``parse_key_value_list``, each result with the index of its line."""
    out: list[EnvLine | EnvProblem] = []
    for index, raw in enumerate(text.split("\n")):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("//"):
            continue
        line = line.split(" #", 1)[0].strip().lstrip("-").strip()
        m = _SEPARATOR.search(line)
        if m is None:
            out.append(EnvProblem(index, raw.strip()))
            continue
        key, value = line[: m.start()].strip(), line[m.end() :].strip()
        if key[:1] in QUOTES and key[-1:] not in QUOTES and value[-1:] in QUOTES:
            key, value = key[1:].strip(), value[:-1].strip()
        out.append(EnvLine(index, key, value))
    return out


def from_string(value: str) -> str:
    """What Komodo stores for a string ``environment``: as written, with a final newline."""
    return value if not value or value.endswith("\n") else value + "\n"


def from_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """What Komodo stores for ``environment = [{variable = "A", value = "1"}, ...]``."""
    text = "\n".join(f"  {variable} = {value}" for variable, value in pairs)
    return text + "\n" if text else text


def as_dict(text: str) -> Mapping[str, str]:
    """The assignments of ``text`` (later ones win), problems skipped."""
    return {e.variable: e.value for e in parse_lines(text) if isinstance(e, EnvLine)}
