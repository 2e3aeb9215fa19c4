"""The agent's own key pair, and its rotation (Komodo's ``RotatePrivateKey``,
``bin/periphery/src/api/keys.rs``), in two steps so the core always accepts the key in use:

1. ``prepare``: a new pair is made and written beside the key (``KEY.next``, mode 0600,
   synced); the current key stays in use; its public key goes to the core, which pins it
   *next to* the current one;
2. ``commit``: the prepared pair is renamed over the key file (atomic; ``KEY.pub`` rewritten
   when there is one), new handshakes use it from then on, and it signs the core's nonce as
   proof. Connections open now stay open.

An agent killed between the steps starts with the old key (a ``KEY.next`` left over is removed
at start); one killed after the rename starts with the new one. Either is accepted by a core
that has pinned both, which it does before it asks for the commit. A key file the agent cannot
write (a read-only secret mount) refuses the rotation at ``prepare``, saying so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from periphery.exceptions import PeripheryError
from protocol.keys import PrivateKey, PublicKey

log = logging.getLogger(__name__)


class RotationError(PeripheryError):
    """The key cannot be rotated (the message says why); the current key stays."""


def _write_synced(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KeyHolder:
    """The key the agent proves itself with; ``on_change`` hears of a committed rotation."""

    def __init__(self, path: Path, current: PrivateKey) -> None:
        self.path = path
        self.current = current
        self.pending: PrivateKey | None = None
        self.on_change: list[Callable[[PrivateKey], None]] = []
        self.next_path.unlink(missing_ok=True)  # a prepare never committed: not in use

    @property
    def next_path(self) -> Path:
        return self.path.with_name(self.path.name + ".next")

    def prepare(self) -> PublicKey:
        if not os.access(self.path.parent, os.W_OK) or (
            self.path.exists() and not os.access(self.path, os.W_OK)
        ):
            raise RotationError(
                f"cannot rotate: {self.path} (or its directory) is not writable by the agent"
            )
        comment = self.current.public_key.comment
        new = PrivateKey.generate(comment)
        try:
            _write_synced(self.next_path, new.openssh_pem(), 0o600)
        except OSError as exc:
            raise RotationError(f"cannot write {self.next_path}: {exc.strerror or exc}") from exc
        self.pending = new
        log.info("key rotation: new key %s prepared", new.public_key.fingerprint())
        return new.public_key

    def commit(
        self, public: PublicKey, nonce: bytes, proof: Callable[[bytes, bytes], bytes]
    ) -> bytes:
        """Make the prepared key the agent's; its signature over ``proof(key, nonce)``."""
        pending = self.pending
        if pending is None or pending.public_key != public:
            raise RotationError("no such key was prepared here (prepare again)")
        try:
            os.replace(self.next_path, self.path)
            _sync_dir(self.path.parent)
            pub = self.path.with_name(self.path.name + ".pub")
            if pub.exists():
                _write_synced(pub, (pending.public_key.openssh_line() + "\n").encode(), 0o644)
        except OSError as exc:
            raise RotationError(f"cannot install the new key: {exc.strerror or exc}") from exc
        old = self.current
        self.current, self.pending = pending, None
        for hook in self.on_change:
            hook(pending)
        log.info(
            "key rotation: now %s (was %s)",
            pending.public_key.fingerprint(),
            old.public_key.fingerprint(),
        )
        return pending.sign(proof(public.wire, nonce))
