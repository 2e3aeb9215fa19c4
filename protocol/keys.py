"""Ed25519 keys in OpenSSH format: parse, serialise, sign, verify.

Pure: text and bytes in, keys out; reading key files is the caller's business (each process's
config loader). Keys made by ``ssh-keygen -t ed25519`` load as they are. Built on
``cryptography``, which asyncssh uses too, because it loads and signs without pulling the SSH
stack into the agent.

A public key travels on the wire as its SSH wire blob (``string "ssh-ed25519" || string key``),
the same bytes an ``authorized_keys`` line carries in base64, so a fingerprint here matches what
``ssh-keygen -lf`` prints.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol.exceptions import BadKey

_KEY_TYPE = b"ssh-ed25519"


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class PublicKey:
    """An Ed25519 public key, compared by value in constant time."""

    __slots__ = ("_key", "raw", "comment")

    def __init__(self, raw: bytes, comment: str = "") -> None:
        if len(raw) != 32:
            raise BadKey(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
        self.raw = raw
        self.comment = comment
        self._key = Ed25519PublicKey.from_public_bytes(raw)

    @property
    def wire(self) -> bytes:
        """The SSH wire blob, as sent in hellos and bound into transcripts."""
        return _ssh_string(_KEY_TYPE) + _ssh_string(self.raw)

    @classmethod
    def from_wire(cls, blob: bytes) -> PublicKey:
        expected_prefix = _ssh_string(_KEY_TYPE)
        if len(blob) != len(expected_prefix) + 4 + 32 or not blob.startswith(expected_prefix):
            raise BadKey("not an ssh-ed25519 public key blob")
        if blob[len(expected_prefix) : len(expected_prefix) + 4] != struct.pack(">I", 32):
            raise BadKey("not an ssh-ed25519 public key blob")
        return cls(blob[-32:])

    def openssh_line(self) -> str:
        line = "ssh-ed25519 " + base64.b64encode(self.wire).decode("ascii")
        return f"{line} {self.comment}" if self.comment else line

    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -lf`` prints it."""
        digest = hashlib.sha256(self.wire).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return hmac.compare_digest(self.raw, other.raw)

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.fingerprint()})"


class PrivateKey:
    """An Ed25519 private key. Never printed: its repr shows the public fingerprint only."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey, comment: str = "") -> None:
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = PublicKey(raw, comment)

    @classmethod
    def generate(cls, comment: str = "") -> PrivateKey:
        return cls(Ed25519PrivateKey.generate(), comment)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def openssh_pem(self) -> bytes:
        """The private key in OpenSSH's ``-----BEGIN OPENSSH PRIVATE KEY-----`` format."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"PrivateKey(public={self.public_key.fingerprint()})"


def parse_private_key(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Load an OpenSSH (or PEM PKCS#8) Ed25519 private key."""
    key: object
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, passphrase)
        else:
            key = serialization.load_pem_private_key(data, passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadKey(f"cannot load the private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BadKey(f"the private key is {type(key).__name__}, not Ed25519 (ssh-ed25519)")
    return PrivateKey(key)


def parse_public_key(line: str) -> PublicKey:
    """Parse an ``ssh-ed25519 AAAA... [comment]`` line (an authorized_keys or .pub line)."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise BadKey("a public key line reads 'ssh-ed25519 AAAA... [comment]'")
    if parts[0] != "ssh-ed25519":
        raise BadKey(f"the public key is {parts[0]!r}, not ssh-ed25519")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError as exc:
        raise BadKey("the public key's base64 part is malformed") from exc
    key = PublicKey.from_wire(blob)
    return PublicKey(key.raw, parts[2] if len(parts) > 2 else "")


def looks_like_public_key_line(spec: str) -> bool:
    """True when ``spec`` is a key line rather than a path to a ``.pub`` file."""
    return spec.lstrip().startswith("ssh-")
