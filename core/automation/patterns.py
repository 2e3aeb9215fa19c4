"""Komodo's batch patterns: which resources a ``Batch*`` execution's ``pattern`` selects. Pure.

As Komodo's ``list_full_for_user_using_pattern`` (``bin/core/src/resource/mod.rs``) reads them:

- the pattern is a list (Komodo's ``parse_string_list``, ``client/core/rs/src/parsers.rs``):
  split into lines, each trimmed; empty lines and lines starting with ``#`` dropped; a line cut
  at its first `` #`` (a comment); then split at commas, each entry trimmed, empty ones dropped;
- an entry written between backslashes (``\\^db-.*$\\``) is a regular expression, matched
  anywhere in the name (Rust's ``Regex::is_match``: Python's ``re.search``);
- any other entry is a wildcard of the ``wildcard`` crate: ``*`` any run of characters, ``?``
  one character, ``\\`` escapes the next ``*``, ``?`` or ``\\``; everything else is literal
  (``[`` too: no character classes); the whole name must match; case matters;
- a name matched by any entry is selected; the result keeps the resources' own order.

An entry that is not a valid regular expression or wildcard is an error (Komodo fails the
execution: "Regex matching string invalid").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from core.exceptions import CoreError


class PatternError(CoreError):
    """A batch pattern with an entry that is not a valid wildcard or regular expression."""


def parse_string_list(source: str) -> list[str]:
    """Komodo's ``parse_string_list``: lines and commas, ``#`` comments, entries trimmed."""
    out: list[str] = []
    for raw in source.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.split(" #", 1)[0]
        out.extend(entry.strip() for entry in line.split(",") if entry.strip())
    return out


def _wildcard(entry: str) -> re.Pattern[str]:
    parts: list[str] = []
    escaped = False
    for ch in entry:
        if escaped:
            if ch not in "*?\\":
                raise PatternError(
                    f"wildcard {entry!r}: '\\{ch}' escapes nothing (only *, ? and \\ are escaped)"
                )
            parts.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    if escaped:
        raise PatternError(f"wildcard {entry!r}: ends with a lone backslash")
    return re.compile("".join(parts), re.DOTALL)


def compile_pattern(pattern: str) -> list[tuple[str, re.Pattern[str], bool]]:
    """Each entry, its compiled form, and whether it is a regular expression (searched) rather
    than a wildcard (matched whole). Raises :class:`PatternError`."""
    out = []
    for entry in parse_string_list(pattern):
        if len(entry) > 1 and entry.startswith("\\") and entry.endswith("\\"):
            try:
                out.append((entry, re.compile(entry[1:-1]), True))
            except re.error as exc:
                raise PatternError(f"regular expression {entry[1:-1]!r}: {exc}") from exc
        else:
            out.append((entry, _wildcard(entry), False))
    return out


def matching(pattern: str, names: Iterable[str]) -> list[str]:
    """The names ``pattern`` selects, in the order given. Raises :class:`PatternError`."""
    compiled = compile_pattern(pattern)
    chosen = []
    for name in names:
        for _entry, rx, search in compiled:
            if (rx.search(name) if search else rx.fullmatch(name)) is not None:
                chosen.append(name)
                break
    return chosen
