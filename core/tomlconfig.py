"""Reading a process's TOML config into its typed msgspec Struct, with errors that name the file
and the key (``FILE: key "a.b": problem``). Shared by the core's and the bootstrap's configs."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import TypeVar

import msgspec

from core.exceptions import ConfigError

T = TypeVar("T")

_PATH_RE = re.compile(r"\$\.([\w.\[\]]+)")


def _key_of(message: str) -> str:
    m = _PATH_RE.search(message)
    return m.group(1) if m else "?"


def load_struct(path: str | os.PathLike[str], kind: type[T]) -> tuple[T, Path]:
    """``kind`` from the TOML at ``path`` (which may not set ``source``), and the path."""
    file = Path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    if "source" in raw:
        raise ConfigError(f'{file}: key "source": unknown key')
    try:
        return msgspec.convert(raw, kind), file
    except msgspec.ValidationError as exc:
        msg = str(exc)
        where = _key_of(msg)
        named = msg.split("`")[1] if "`" in msg else "?"
        if "missing required field" in msg:
            key = named if where == "?" else f"{where}.{named}"
            raise ConfigError(f'{file}: key "{key}": required, add it') from exc
        if "unknown field" in msg:
            key = named if where == "?" else f"{where}.{named}"
            raise ConfigError(f'{file}: key "{key}": unknown key') from exc
        raise ConfigError(f'{file}: key "{where}": {msg.split(" - at ")[0]}') from exc
