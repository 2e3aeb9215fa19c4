"""The stack's env file, written as Komodo writes it, and the env files a deploy passes on.

Komodo's rules (moghtech/komodo), each written once here:

- Writing (``lib/environment``, ``write_env_file``; :func:`write_env_file`): the text the core
  sends (``variable=value`` lines, built by ``core.deploy.environment``) goes to the run
  directory joined with ``env_file_path``, as it is, mode 0600. With no variables nothing is
  written, and the file is passed on only if it is already there (a ``files_on_host`` stack
  whose author writes it).
- Which files and in what order (``api/compose.rs``, ``env_file_args``; :func:`env_files`): each
  of ``additional_env_files`` except the written file itself, in order, then the written file
  last, so that its values win. Compose gets ``--env-file`` for each; for ``docker stack
  deploy`` the shell sources each in that order (``set -a``).
- Compose v1 reads one ``--env-file`` only: there the files are joined, in the same order, into
  one the agent keeps (:func:`joined_env_file`), so later values still win.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from periphery.exceptions import DeployError, InvalidName


def check_env(env: dict[str, str]) -> None:
    """Raise :class:`InvalidName` when a process environment key is unusable or a value holds
    NUL (these go to ``execve``, not to a file)."""
    for key, value in env.items():
        if not key or "=" in key or "\x00" in key:
            raise InvalidName(f"environment variable name {key!r} is not valid")
        if "\x00" in value:
            raise InvalidName(f"environment variable {key} contains a NUL byte")


def write_private(path: Path, content: str) -> Path:
    """Write ``path`` atomically, mode 0600; a symlink there is replaced, not followed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_env_file(path: Path, content: str) -> bool:
    """Komodo's ``write_env_file`` at ``path`` (the run directory joined with
    ``env_file_path``): True when the file is to be passed on (written now, or there already)."""
    if "\x00" in content:
        raise InvalidName("the environment contains a NUL byte")
    if not content:
        return path.is_file()
    try:
        write_private(path, content)
    except OSError as exc:
        raise DeployError(
            f"failed to write the environment file to {path}: {exc.strerror or exc}"
        ) from exc
    return True


def env_files(env_file_path: str, additional: Sequence[str]) -> list[str]:
    """Komodo's ``env_file_args`` order: the additional files (but the written one), then the
    written one (``env_file_path``; "" when none was written)."""
    out = [f for f in additional if not env_file_path or f != env_file_path]
    if env_file_path:
        out.append(env_file_path)
    return out


def joined_env_file(target_dir: Path, paths: Sequence[Path]) -> Path:
    """For Compose v1: ``paths`` joined in order into one file the agent keeps beside the
    stack (``ROOT/.stackward/env/<target>.env``, mode 0600)."""
    parts = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DeployError(f"env file {path}: {exc.strerror or exc}") from exc
        parts.append(text if text.endswith("\n") or not text else text + "\n")
    return write_private(target_dir, "".join(parts))
