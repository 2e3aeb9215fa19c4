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


def parse_env_text(text: str, where: str) -> dict[str, str]:
    """``KEY=value`` lines as Compose reads them: blank lines and ``#`` comments skipped, an
    optional ``export``, matching outer quotes removed (double quotes with ``\\n`` escapes)."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.fullmatch(key):
            raise InvalidName(f"{where}:{number}: expected KEY=value")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        env[key] = value
    return env


def merge_env_files(
    run_directory: Path, files: list[str], env: Mapping[str, str]
) -> dict[str, str]:
    """The variables of ``files`` in order (later wins), then ``env`` over them.

    A relative path is confined to the run directory (symlinks included); an absolute path is
    a file on the host, as the resource file gives it. A missing file is an error that names it.
    """
    from periphery.exceptions import DeployError
    from periphery.ops.paths import resolve_inside

    merged: dict[str, str] = {}
    for name in files:
        path = Path(name) if os.path.isabs(name) else resolve_inside(run_directory, name)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DeployError(f"env file {name!r}: {exc.strerror or exc}") from exc
        merged.update(parse_env_text(text, name))
    merged.update(env)
    return merged
