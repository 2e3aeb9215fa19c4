"""Line numbers for keys of a TOML file that :mod:`tomllib` has already parsed.

Why this design: ``tomllib`` (standard library, no dependency) parses fast enough but keeps no
positions. ``tomlkit`` keeps them but is an order of magnitude slower and would break the
benchmark target (1,000 stacks loaded, validated and planned in 250 ms). Findings are rare in a
healthy file, so the position of a key is only needed when something is reported. This module
therefore scans the *source text* once, lazily (on the first lookup), with a small line-oriented
scanner driven by compiled regular expressions, and maps a key path to the line that defines it:

* ``[[stack]]`` / ``[stack.config]`` / ``[[procedure.config.stage]]`` headers, with array-of-table
  indices counted per parent (``("stack", 3, "config")``);
* ``key = value`` lines, dotted keys included (``pre_deploy.command = ...`` records both
  ``pre_deploy`` and ``pre_deploy.command``);
* multi-line basic and literal strings, and arrays or inline tables spanning lines, are skipped so
  that text inside them is never taken for a key.

A lookup of a path that has no line of its own (an element of an inline array, a key inside an
inline table) returns the line of its nearest recorded ancestor, which is where the value is
written. tomllib has already accepted the file, so the scanner may assume valid TOML.

Most lines are ``key = "scalar"`` or ``key = ["a", "b"]``: one compiled regular expression
recognises them whole; only the other lines go through the token loop. The cost is about 2 µs a
line (a 1,000-stack file, 24,000 lines, in ~45 ms), paid only by a file that has findings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Path = tuple[str | int, ...]

_KEY_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_AOT_HEADER = re.compile(rf"\s*\[\[\s*({_DOTTED})\s*\]\]")
_TABLE_HEADER = re.compile(rf"\s*\[\s*({_DOTTED})\s*\]")
_KEYVAL = re.compile(rf"\s*({_DOTTED})\s*=\s*")
_PART = re.compile(_KEY_PART)
# Tokens that matter for finding where a value ends.
_TOKENS = re.compile(r'"""|\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|[\[\]{}#]')
_END_ML_BASIC = re.compile(r'(?:[^"\\]|\\.|"(?!""))*""""{0,2}')
_END_ML_LITERAL = re.compile(r"(?:[^']|'(?!''))*'''(?:'{0,2})")
_SPECIAL = re.compile(r"[\"'\[\]{}#]")
# The common line: a bare key and a one-line scalar value (string, number, boolean).
_SIMPLE = re.compile(
    r"[ \t]*([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)[ \t]*=[ \t]*"
    r'(?:"[^"\\\n]*(?:\\.[^"\\\n]*)*"(?!"")|\'[^\'\n]*\'(?!\'\')|[-+0-9.:TZa-z_]+'
    r'|\[[ \t]*(?:"[^"\\\n]*"[ \t]*,?[ \t]*)*\])[ \t]*(?:#.*)?$'
)


def _split_key(dotted: str) -> list[str]:
    parts: list[str] = []
    for m in _PART.finditer(dotted):
        p = m.group(0)
        if p[0] in "\"'":
            p = p[1:-1]
        parts.append(p)
    return parts


class LineMap:
    """Key path -> 1-based line number, built from the source text on first use."""

    __slots__ = ("_text", "_lines", "_open", "_split")

    def __init__(self, text: str) -> None:
        self._text = text
        self._lines: dict[Path, int] | None = None
        self._open: int | None = None
        self._split: list[str] | None = None

    def _scanned(self) -> dict[Path, int]:
        lines = self._lines
        if lines is None:
            lines, self._open = _scan(self._text)
            self._lines = lines
        return lines

    def unterminated(self) -> int | None:
        """The line where a multi-line string, an array or an inline table opened and never
        closed (tomllib says only "at end of document"), or None."""
        self._scanned()
        return self._open

    def text_lines(self) -> list[str]:
        if self._split is None:
            self._split = self._text.splitlines()
        return self._split

    def find(self, path: Sequence[str | int], pattern: re.Pattern[str], span: int) -> int:
        """The first line, from ``path``'s own line through ``span`` more, where ``pattern``
        is found (a line inside a multi-line value); ``path``'s line when none."""
        start = self.line_of(path)
        lines = self.text_lines()
        for n in range(start, min(start + span, len(lines)) + 1):
            if pattern.search(lines[n - 1]):
                return n
        return start

    def line_of(self, path: Sequence[str | int]) -> int:
        """Line of ``path`` or of its nearest ancestor that has one; 1 when none has."""
        lines = self._scanned()
        p = tuple(path)
        while p:
            found = lines.get(p)
            if found is not None:
                return found
            p = p[:-1]
        return 1


def _scan(text: str) -> tuple[dict[Path, int], int | None]:  # noqa: C901 - one state machine
    """Key paths to lines, and the line of a string or bracket still open at the end."""
    lines: dict[Path, int] = {}
    opened = 0  # where the current multi-line string or outermost bracket opened
    aot_index: dict[Path, int] = {}
    table: Path = ()
    mode = 0  # 0 normal, 1 in ml basic string, 2 in ml literal string, 3 in brackets
    depth = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        pos = 0
        if mode == 1:
            if '"""' not in line:
                continue
            m = _END_ML_BASIC.match(line)
            if m is None:
                continue
            mode, pos = (3 if depth else 0), m.end()
        elif mode == 2:
            if "'''" not in line:
                continue
            m = _END_ML_LITERAL.match(line)
            if m is None:
                continue
            mode, pos = (3 if depth else 0), m.end()
        if mode == 0 and pos == 0:
            if not line:
                continue
            simple = _SIMPLE.match(line)
            if simple is not None:
                key = simple.group(1)
                if "." in key:
                    path = table
                    for part in key.split("."):
                        path = (*path, part)
                        lines.setdefault(path, lineno)
                else:
                    lines.setdefault((*table, key), lineno)
                continue
            stripped = line.lstrip()
            if not stripped or stripped[0] == "#":
                continue
            if stripped[0] == "[":
                m = _AOT_HEADER.match(line)
                if m is not None:
                    table = _resolve(_split_key(m.group(1)), aot_index, new_element=True)
                    lines.setdefault(table, lineno)
                    lines.setdefault(table[:-1], lineno)
                    continue
                m = _TABLE_HEADER.match(line)
                if m is not None:
                    table = _resolve(_split_key(m.group(1)), aot_index, new_element=False)
                    lines.setdefault(table, lineno)
                    continue
            m = _KEYVAL.match(line)
            if m is None:
                continue
            path = table
            for part in _split_key(m.group(1)):
                path = (*path, part)
                lines.setdefault(path, lineno)
            pos = m.end()
        # Scan the rest of the line for strings and brackets to know whether the value goes on.
        if mode == 0 and _SPECIAL.search(line, pos) is None:
            continue
        while True:
            m = _TOKENS.search(line, pos)
            if m is None:
                break
            tok = m.group(0)
            pos = m.end()
            if tok == '"""':
                e = _END_ML_BASIC.match(line, pos)
                if e is None:
                    mode = 1
                    opened = opened if depth else lineno
                    break
                pos = e.end()
            elif tok == "'''":
                e = _END_ML_LITERAL.match(line, pos)
                if e is None:
                    mode = 2
                    opened = opened if depth else lineno
                    break
                pos = e.end()
            elif tok == "#":
                break
            elif tok in "[{":
                if depth == 0:
                    opened = lineno
                depth += 1
            elif tok in "]}":
                depth -= 1
        if mode in (0, 3):
            mode = 3 if depth > 0 else 0
    return lines, (opened if mode else None)


def _resolve(parts: list[str], aot_index: dict[Path, int], *, new_element: bool) -> Path:
    path: Path = ()
    last = len(parts) - 1
    for i, part in enumerate(parts):
        path = (*path, part)
        if i == last and new_element:
            idx = aot_index.get(path, -1) + 1
            aot_index[path] = idx
            path = (*path, idx)
        elif path in aot_index:
            path = (*path, aot_index[path])
    return path
