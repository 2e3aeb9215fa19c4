"""The core's key files: reading its private key (refused when others may read it) and public
keys given as lines or files; writing a new file without following links."""

from __future__ import annotations

import os
from pathlib import Path

from protocol.exceptions import BadKey
from protocol.keys import (
    PrivateKey,
    PublicKey,
    looks_like_public_key_line,
    parse_private_key,
    parse_public_key,
    permissions_problem,
)


def read_private_key(path: Path) -> PrivateKey:
    """The key in ``path``; refused (``BadKey``, with the chmod to run) when group or others
    may read it, as OpenSSH refuses it."""
    try:
        with open(path, "rb") as handle:
            st = os.fstat(handle.fileno())
            key = parse_private_key(handle.read())  # not a key at all: say that first
    except OSError as exc:
        raise BadKey(f"cannot read {path}: {exc.strerror}") from exc
    problem = permissions_problem(str(path), st.st_mode, st.st_uid, os.getuid())
    if problem is not None:
        raise BadKey(problem)
    return key


def write_new_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``path`` whole or not at all, never through a link: the data goes to ``PATH.tmp``,
    created with ``O_EXCL | O_NOFOLLOW`` (a file or symlink already there is refused, not
    followed or truncated), then renamed over ``path`` (a symlink at ``path`` is replaced, not
    followed). ``OSError`` on failure, the temporary file removed."""
    tmp = path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError as exc:
        what = "a symlink" if tmp.is_symlink() else "a file"
        raise FileExistsError(
            exc.errno,
            f"{what} is in the way (an interrupted write, or planted): remove it",
            str(tmp),
        ) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # whatever the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_public_key(spec: str, base: Path) -> PublicKey:
    """A public key given as an ``ssh-ed25519 AAAA...`` line or a path to a ``.pub`` file
    (relative to ``base``)."""
    if looks_like_public_key_line(spec):
        return parse_public_key(spec)
    path = (base / os.path.expanduser(spec)).resolve()
    try:
        return parse_public_key(path.read_text())
    except OSError as exc:
        raise BadKey(f"cannot read {path}: {exc.strerror}") from exc
