"""A stack's ``environment`` (Komodo's multi-line ``KEY=value`` text) as a dict. Pure."""

from __future__ import annotations

import re

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def parse_environment(text: str) -> dict[str, str]:
    """``KEY=value`` or ``KEY = value`` lines; blank lines and ``#`` comments are skipped; a
    value in matching single or double quotes loses them; ``export KEY=value`` works too.
    Lines without ``=`` or with an unusable key raise ``ValueError`` naming the line."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.fullmatch(key):
            raise ValueError(f"environment line {number}: expected KEY=value, got {raw.strip()!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key] = value
    return env
