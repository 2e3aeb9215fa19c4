"""The stack's environment as a ``.env`` file that both Compose v1 and v2 read the same way.

Values made only of plain characters are written bare; values without a single quote or a line
break are single-quoted (no interpolation, no escapes, in both parsers); anything else is
double-quoted with ``\\\\``, ``\\"``, ``\\n``, ``\\$`` escapes. The exact values also reach Compose
through the process environment, which takes precedence over ``.env`` for interpolation.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from periphery.exceptions import InvalidName

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE = re.compile(r"[A-Za-z0-9_./:@%+,=-]*")
_FILE_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def check_env(env: Mapping[str, str]) -> None:
    """Raise :class:`InvalidName` when a key is not a variable name or a value holds NUL."""
    for key, value in env.items():
        if not _KEY.fullmatch(key):
            raise InvalidName(f"environment variable name {key!r} is not valid")
        if "\x00" in value:
            raise InvalidName(f"environment variable {key} contains a NUL byte")


def quote(value: str) -> str:
    if _BARE.fullmatch(value):
        return value
    if "'" not in value and "\n" not in value and "\r" not in value:
        return f"'{value}'"
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("$", "\\$")
    )
    return f'"{escaped}"'


def render(env: Mapping[str, str]) -> str:
    check_env(env)
    return "".join(f"{key}={quote(value)}\n" for key, value in env.items())


def write_env_file(directory: Path, env: Mapping[str, str], name: str = ".env") -> Path:
    """Write ``directory/name`` atomically, mode 0600; a symlink there is replaced, not followed."""
    if not _FILE_NAME.fullmatch(name) or name in {".", ".."}:
        raise InvalidName(f"env file name {name!r} must be a plain file name")
    path = directory.resolve() / name
    content = render(env)
    tmp = path.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
