"""``host install --server-file``: put one ``[[server]]`` into a resource file, keeping the rest
of the file byte for byte (pure: text in, text out).

The entry of that name, from its ``[[server]]`` header to the last line of its tables
(``[server.config]`` and deeper), is replaced where it stands; the comment line this command
wrote above it goes with it. Comments and blank lines after the entry, and everything else, stay
as they are. A file without that server gets the block at its end. Headers are found line by
line outside multi-line strings (a ``file_contents = '''...'''`` that shows ``[[server]]`` is
not one). The result is checked: it must load, hold the new entry, and hold every other
resource exactly as before; else ``ServerFileError`` says why and nothing is written.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any

from core.exceptions import HostInstallError

_HEADER = re.compile(r"\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?")


class ServerFileError(HostInstallError):
    """The file cannot take the block (it does not load, or names the server twice)."""


def marker(name: str) -> str:
    """The comment line written above the block."""
    return f"# The agent on server {name!r}, pinned by `stackward host install`."


@dataclass(frozen=True)
class _Header:
    line: int
    array: bool
    key: str


def _headers(lines: list[str]) -> list[_Header]:
    """The table headers of a TOML text, by line, outside multi-line strings."""
    out: list[_Header] = []
    inside: str | None = None  # the delimiter of the multi-line string we are in
    for number, line in enumerate(lines):
        if inside is None:
            found = _HEADER.fullmatch(line.rstrip("\r\n"))
            if found is not None:
                key = ".".join(part.strip().strip("\"'") for part in found.group(2).split("."))
                out.append(_Header(number, found.group(1) == "[[", key))
                continue
        inside = _string_state(line, inside)
    return out


def _string_state(line: str, inside: str | None) -> str | None:
    """Whether a multi-line string is open after ``line`` (its delimiter), given the state
    before it. Single-line strings and comments are skipped; escapes count in basic strings."""
    i = 0
    while i < len(line):
        if inside is not None:
            end = line.find(inside, i)
            while end > 0 and inside == '"""' and _escaped(line, end):
                end = line.find(inside, end + 1)
            if end < 0:
                return inside
            i, inside = end + 3, None
            continue
        c = line[i]
        if c == "#":
            return None
        if line.startswith(('"""', "'''"), i):
            inside = line[i : i + 3]
            i += 3
            continue
        if c in "\"'":
            end = line.find(c, i + 1)
            while end > 0 and c == '"' and _escaped(line, end):
                end = line.find(c, end + 1)
            i = end + 1 if end > 0 else len(line)
            continue
        i += 1
    return inside


def _escaped(line: str, at: int) -> bool:
    backslashes = 0
    while at - backslashes - 1 >= 0 and line[at - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _is_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _entries(lines: list[str]) -> list[tuple[int, int]]:
    """Each ``[[server]]`` entry as (first line, end line exclusive), its trailing blank lines
    and comments left out."""
    headers = _headers(lines)
    spans: list[tuple[int, int]] = []
    for index, header in enumerate(headers):
        if not (header.array and header.key == "server"):
            continue
        end = len(lines)
        for later in headers[index + 1 :]:
            if not later.key.startswith("server."):
                end = later.line
                break
        while end > header.line + 1 and _is_blank(lines[end - 1]):
            end -= 1
        spans.append((header.line, end))
    return spans


def _without(doc: dict[str, Any], name: str) -> dict[str, Any]:
    rest = dict(doc)
    servers = [s for s in doc.get("server", []) if s.get("name") != name]
    if servers:
        rest["server"] = servers
    else:
        rest.pop("server", None)
    return rest


def replace_server(text: str, name: str, block: str) -> str:
    """``text`` with the ``[[server]]`` named ``name`` replaced by ``block`` (a ``[[server]]``
    entry, ending in a newline), or ``block`` appended when there is none."""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ServerFileError(
            f"it is not valid TOML ({exc}): fix it, or give another file"
        ) from exc
    lines = text.splitlines(keepends=True)
    named = []
    for start, end in _entries(lines):
        try:
            entry = tomllib.loads("".join(lines[start:end]))["server"][0]
        except tomllib.TOMLDecodeError:
            continue  # not an entry on its own lines: the check below refuses the result
        if entry.get("name") == name:
            named.append((start, end))
    new = f"{marker(name)}\n{block}"
    if len(named) > 1:
        raise ServerFileError(f"it has {len(named)} [[server]] entries named {name!r}: keep one")
    if named:
        start, end = named[0]
        if start > 0 and lines[start - 1].rstrip("\r\n") == marker(name):
            start -= 1
        result = "".join(lines[:start]) + new + "".join(lines[end:])
    elif not text.strip():
        result = new
    else:
        gap = "" if text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        result = text + gap + new
    try:
        after: dict[str, Any] | None = tomllib.loads(result)
    except tomllib.TOMLDecodeError:
        after = None
    wanted = tomllib.loads(block)["server"][0]
    mine = [s for s in after.get("server", []) if s.get("name") == name] if after else []
    if after is None or mine != [wanted] or _without(after, name) != _without(before, name):
        raise ServerFileError(
            f"the [[server]] named {name!r} could not be replaced alone (is it split or written"
            " inline?): edit the file by hand"
        )
    return result
