"""Reading the core's keys: its private key file, and public keys given as lines or files."""

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
)


def read_private_key(path: Path) -> PrivateKey:
    try:
        return parse_private_key(path.read_bytes())
    except OSError as exc:
        raise BadKey(f"cannot read {path}: {exc.strerror}") from exc


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
