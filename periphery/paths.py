"""Where things are on the agent, and the one place paths are confined.

The agent's root directory (``root_directory``) holds one directory per stack, named by the
stack (``target``): for a git stack it is the stack's checkout, kept at that fixed path from
deploy to deploy (Komodo's fixed clone), so a service bound to ``./config`` is not restarted
because a commit changed; for a ``file_contents`` stack it is where the compose file is
written. The agent's own state is under ``ROOT/.stackward``.

Paths from the resource file follow Komodo's rule, ``base.join(path)``: an absolute path is
used as given (the file's author points at the host on purpose), a relative one is joined to its
base (the run directory, or the stack's directory). What is confined:

- a relative path of a git stack may not leave its checkout, ``..`` and symlinks included
  (``../global.env`` from ``stacks/app`` is fine; ``../../..`` is refused);
- a checked-out tree may hold no symlink that points outside it;
- names that become one directory (``target``) are one plain path component;
- a ``[[repo]]``'s clone is at its absolute path, or under ``ROOT/repos``, never at ``/``;
- ``Run``'s working directory stays inside the root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from periphery.exceptions import DeployError, ForbiddenPath, InvalidName
from protocol.messages import StackSource as Source

STATE = ".stackward"
"""The agent's own state under its root (fences, checkout indexes and locks)."""

# A directory name made from a request (a stack, a target): one path component, no dot start.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_COMMIT = re.compile(r"[0-9a-f]{7,64}")


def _no_nul(path: str) -> str:
    if "\x00" in path:
        raise ForbiddenPath(f"path {path!r} contains a NUL byte")
    return path


def confine(root: Path, path: str) -> Path:
    """Resolve ``path`` (relative to ``root``, or absolute) and insist it stays inside ``root``.

    Symlinks are resolved first, so a link pointing outside is refused like ``..`` is.
    """
    _no_nul(path)
    real_root = Path(os.path.realpath(root))
    candidate = Path(os.path.realpath(real_root / path))
    if candidate != real_root and real_root not in candidate.parents:
        raise ForbiddenPath(f"'{path}' resolves outside the agent's root directory")
    return candidate


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
    raw = _no_nul(os.fspath(relpath))
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


def repo_path(root: Path, path: str) -> Path:
    """Where a ``[[repo]]``'s clone is kept: an absolute ``path`` as given (not ``/`` or one
    level below it), a relative one under ``ROOT/repos``; ``..`` refused."""
    if not path.strip():
        raise ForbiddenPath("a repo needs a path")
    pure = PurePosixPath(path)
    if ".." in pure.parts:
        raise ForbiddenPath(f"repo path {path!r} contains '..'")
    if pure.is_absolute():
        if len(pure.parts) < 3:
            raise ForbiddenPath(f"repo path {path!r} is too close to / to be a clone's directory")
        return Path(path)
    return resolve_inside(root / "repos", path)


def komodo_join(base: Path, path: str) -> Path:
    """Komodo's ``base.join(path).components()``: an absolute ``path`` replaces ``base``;
    ``.`` and repeated separators go; ``..`` stays for the system to resolve."""
    _no_nul(path)
    joined = PurePosixPath(base, path) if path else PurePosixPath(base)
    return Path(*[p for p in joined.parts if p != "."])


def stack_dir(root: Path, target: str) -> Path:
    """``ROOT/<target>``: the stack's checkout, or where its file_contents are written."""
    return root.resolve() / safe_name(target, "target")


@dataclass(frozen=True)
class StackPaths:
    """A stack's directories on this host, and the one rule for the paths it is given."""

    directory: Path  # ROOT/<target>
    run_directory: Path
    confined_to: Path | None  # relative paths may not leave it (a git stack's checkout)

    def resolve(self, path: str, base: Path | None = None, what: str = "path") -> Path:
        """``path`` joined to ``base`` (default: the run directory) as Komodo joins it; a
        relative path of a git stack that leads outside the checkout is refused."""
        start = self.run_directory if base is None else base
        joined = komodo_join(start, path)
        if PurePosixPath(path).is_absolute() or self.confined_to is None:
            return joined
        real = Path(os.path.realpath(joined))
        limit = Path(os.path.realpath(self.confined_to))
        if real != limit and limit not in real.parents:
            raise ForbiddenPath(f"{what} {path!r} leads outside the checkout ({real})")
        return joined

    def command_directory(self, path: str, what: str) -> Path:
        """Where a pre/post-deploy command runs: the run directory joined with ``path``
        (Komodo's ``run_directory.join(path)``); it must be a directory."""
        workdir = self.resolve(path, what=f"{what}.path")
        if not workdir.is_dir():
            raise DeployError(f"{what}.path {path!r}: {workdir} is not a directory")
        return workdir


def stack_paths(root: Path, target: str, source: Source, run_directory: str) -> StackPaths:
    """The directories of stack ``target`` (nothing is made or checked here).

    As Komodo's ``write_stack``: a git stack runs in its checkout joined with
    ``run_directory``; a ``files_on_host`` stack in ``ROOT/<target>`` joined with
    ``run_directory`` (so an absolute one is used as given); a ``file_contents`` stack in
    ``ROOT/<target>`` itself (its run_directory is not used).
    """
    directory = stack_dir(root, target)
    match source:
        case Source.GIT:
            paths = StackPaths(directory, directory, directory)
            return StackPaths(
                directory, paths.resolve(run_directory, what="run_directory"), directory
            )
        case Source.FILES_ON_HOST:
            return StackPaths(directory, komodo_join(directory, run_directory), None)
        case Source.FILE_CONTENTS:
            return StackPaths(directory, directory, None)
