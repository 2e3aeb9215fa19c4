"""Confinement of paths to the agent's root directory."""

from __future__ import annotations

import os
from pathlib import Path

from periphery.exceptions import ForbiddenPath


def confine(root: Path, path: str) -> Path:
    """Resolve ``path`` (relative to ``root``, or absolute) and insist it stays inside ``root``.

    Symlinks are resolved first, so a link pointing outside is refused like ``..`` is.
    """
    if "\x00" in path:
        raise ForbiddenPath("a path may not contain NUL bytes")
    real_root = Path(os.path.realpath(root))
    candidate = Path(os.path.realpath(real_root / path))
    if candidate != real_root and real_root not in candidate.parents:
        raise ForbiddenPath(f"'{path}' resolves outside the agent's root directory")
    return candidate
