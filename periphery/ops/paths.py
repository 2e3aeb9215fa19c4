"""Path confinement: every path a deploy uses stays inside the directory it belongs to.

A relative path from a request is refused when it is absolute, has a ``..`` component, or
resolves (through symlinks) outside its base. A checked-out tree is refused when any symlink in
it points outside the tree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from periphery.exceptions import DeployError, ForbiddenPath, InvalidName

# A directory name made from a request (a stack, a target): one path component, no dot start.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_COMMIT = re.compile(r"[0-9a-f]{7,64}")

# What `docker compose` looks for when no file is named, in its order.
DEFAULT_COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def safe_name(name: str, what: str = "name") -> str:
    """``name`` if it can be used as one directory name, else :class:`InvalidName`."""
    if not _SAFE_NAME.fullmatch(name):
        raise InvalidName(
            f"{what} {name!r} must be 1-128 letters, digits, '_', '.', '-', not starting with "
            "'.', '_' or '-'"
        )
    return name


def commit_id(commit: str) -> str:
    """A lower-case hex commit id (7 to 64 digits), else :class:`InvalidName`."""
    lowered = commit.strip().lower()
    if not _COMMIT.fullmatch(lowered):
        raise InvalidName(f"commit {commit!r} is not a hex commit id")
    return lowered


def resolve_inside(base: Path, relpath: str | os.PathLike[str]) -> Path:
    """``base/relpath`` fully resolved, refused unless it stays inside ``base``.

    Raises :class:`ForbiddenPath` for an absolute ``relpath``, a ``..`` component, or a symlink
    anywhere along the way that leads outside ``base``. The path need not exist.
    """
    raw = os.fspath(relpath)
    if "\x00" in raw:
        raise ForbiddenPath(f"path {raw!r} contains a NUL byte")
    rel = PurePosixPath(raw)
    if rel.is_absolute():
        raise ForbiddenPath(f"path {raw!r} is absolute; it must be relative to {base}")
    if ".." in rel.parts:
        raise ForbiddenPath(f"path {raw!r} contains '..'")
    real_base = base.resolve()
    target = (real_base / rel).resolve()
    if not target.is_relative_to(real_base):
        raise ForbiddenPath(f"path {raw!r} resolves to {target}, outside {real_base}")
    return target


def refuse_escaping_symlinks(tree: Path) -> None:
    """Raise :class:`ForbiddenPath` when any symlink under ``tree`` resolves outside it."""
    real_tree = tree.resolve()
    for dirpath, dirnames, filenames in os.walk(real_tree, followlinks=False):
        for entry in (*dirnames, *filenames):
            path = Path(dirpath, entry)
            if not path.is_symlink():
                continue
            target = path.resolve()
            if not target.is_relative_to(real_tree):
                rel = path.relative_to(real_tree)
                raise ForbiddenPath(
                    f"symlink {rel} -> {os.readlink(path)} points outside the checkout"
                )


@dataclass(frozen=True)
class RunPaths:
    """Where a stack's deploy command runs and the files it is given (all resolved)."""

    run_directory: Path
    files: tuple[Path, ...]

    def relative_files(self) -> tuple[str, ...]:
        return tuple(str(f.relative_to(self.run_directory)) for f in self.files)


def run_paths(checkout: Path, run_directory: str | None, file_paths: Sequence[str]) -> RunPaths:
    """Resolve a stack's ``run_directory`` and ``file_paths`` inside its checkout.

    Nothing is run: call this before any step that uses the paths. ``file_paths`` are relative
    to the run directory; when empty, the first of :data:`DEFAULT_COMPOSE_FILES` that exists.
    """
    run_dir = resolve_inside(checkout, run_directory or ".")
    if not run_dir.is_dir():
        raise DeployError(f"run_directory {run_directory!r} is not a directory in the checkout")
    if file_paths:
        files = tuple(resolve_inside(run_dir, f) for f in file_paths)
    else:
        found = [run_dir / n for n in DEFAULT_COMPOSE_FILES if (run_dir / n).is_file()]
        if not found:
            raise DeployError(
                f"no compose file in {run_directory or '.'!r}: looked for "
                + ", ".join(DEFAULT_COMPOSE_FILES)
            )
        files = (resolve_inside(run_dir, found[0].name),)
    for path, name in zip(files, file_paths or [files[0].name], strict=True):
        if not path.is_file():
            raise DeployError(f"file {name!r} does not exist in {run_directory or '.'!r}")
    return RunPaths(run_dir, files)
