"""Extract a tar stream (``git archive``) under one directory, and nothing outside it.

The same rules on every supported Python: ``TarFile.extractall(filter="data")`` only exists from
3.11.4 (Debian 12 ships 3.11.2), so members are checked and written here, one by one:

- a name that is absolute, has a ``..`` component, or is empty is refused;
- regular files, directories and symbolic links only: hard links, devices, FIFOs and other
  types are refused;
- a symbolic link must be relative and lead to a place inside the directory (following the
  links already extracted);
- nothing is written through a path whose real location is outside the directory, and no
  member replaces one extracted before it;
- modes keep only the owner's bits and read/execute for others (no set-uid, no world write),
  and owners are never set.

The first refused member stops the extraction with ``UnsafeArchive`` naming it; the caller
throws the partial directory away.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
from typing import IO

from core.exceptions import CoreError

_CHUNK = 1 << 16


class UnsafeArchive(CoreError):
    """A tar member would land outside the target, or is of a type we do not extract."""


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    if not name or name.startswith("/") or "\x00" in name:
        raise UnsafeArchive(f"tar member {name!r}: an absolute or empty path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchive(f"tar member {name!r}: a '..' component leads outside")
    return "/".join(parts)


def _check_link(root: str, name: str, target: str) -> None:
    if not target or target.startswith("/"):
        raise UnsafeArchive(f"tar member {name!r}: a link to the absolute path {target!r}")
    parent = os.path.realpath(os.path.join(root, posixpath.dirname(name)))
    lexical = os.path.normpath(os.path.join(parent, target))
    resolved = os.path.realpath(lexical)
    if not (_inside(root, lexical) and _inside(root, resolved)):
        raise UnsafeArchive(f"tar member {name!r}: a link to {target!r} leads outside")


def _destination(root: str, name: str) -> str:
    path = os.path.join(root, name)
    parent = os.path.realpath(os.path.dirname(path))
    if not _inside(root, parent):
        raise UnsafeArchive(f"tar member {name!r}: its directory leads outside through a link")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UnsafeArchive(f"tar member {name!r}: appears twice")
    return path


def _mode(member: tarfile.TarInfo, directory: bool) -> int:
    executable = directory or bool(member.mode & 0o111)
    return 0o755 if executable else 0o644


def extract(stream: IO[bytes], dest: os.PathLike[str] | str) -> int:
    """Extract the tar read from ``stream`` (read once, in order) under ``dest``, which must
    exist. Returns the number of members written; ``UnsafeArchive`` on the first refusal,
    ``tarfile.TarError`` / ``OSError`` for a broken stream or a failed write."""
    root = os.path.realpath(dest)
    count = 0
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if member.type in (tarfile.XGLTYPE, tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME):
                continue  # pax/GNU headers carry metadata for the next member
            name = _member_name(member)
            if not name:  # the archive's own "./"
                continue
            path = _destination(root, name)
            if member.isdir():
                os.makedirs(path, mode=0o755, exist_ok=True)
                os.chmod(path, _mode(member, True))
            elif member.isreg():
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - a regular member always has data
                    raise UnsafeArchive(f"tar member {name!r}: no data")
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                fd = os.open(path, flags, _mode(member, False))
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
            elif member.issym():
                _check_link(root, name, member.linkname)
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                os.symlink(member.linkname, path)
            else:
                kind = "a hard link" if member.islnk() else "a device, FIFO or special file"
                raise UnsafeArchive(f"tar member {name!r}: {kind} is not extracted")
            count += 1
    return count

