"""Ed25519 keys in OpenSSH format: parse, serialise, sign, verify.

Pure: text and bytes in, keys out; reading key files is the caller's business (each process's
config loader). Keys made by ``ssh-keygen -t ed25519`` load as they are, and ours load in
``ssh-keygen``. The OpenSSH container (``openssh-key-v1``, PROTOCOL.key in OpenSSH's sources)
is parsed here for unencrypted ed25519 keys, so the agent needs no more than ``ed25519.py``;
a PKCS#8 PEM key is handed to ``cryptography``.

A public key travels on the wire as its SSH wire blob (``string "ssh-ed25519" || string key``),
the same bytes an ``authorized_keys`` line carries in base64, so a fingerprint here matches what
``ssh-keygen -lf`` prints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from protocol.ed25519 import PUBLIC_BYTES, SEED_BYTES, backend
from protocol.exceptions import BadKey

_KEY_TYPE = b"ssh-ed25519"
_MAGIC = b"openssh-key-v1\x00"
_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
_END = "-----END OPENSSH PRIVATE KEY-----"


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class _Reader:
    """Reads SSH wire fields, raising ``BadKey`` on truncation."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise BadKey("the key is truncated")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def string(self) -> bytes:
        return self.take(self.uint32())


class PublicKey:
    """An Ed25519 public key, compared by value in constant time."""

    __slots__ = ("raw", "comment")

    def __init__(self, raw: bytes, comment: str = "") -> None:
        if len(raw) != PUBLIC_BYTES:
            raise BadKey(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
        self.raw = bytes(raw)
        self.comment = comment

    @property
    def wire(self) -> bytes:
        """The SSH wire blob, as sent in hellos and bound into transcripts."""
        return _ssh_string(_KEY_TYPE) + _ssh_string(self.raw)

    @classmethod
    def from_wire(cls, blob: bytes) -> PublicKey:
        reader = _Reader(blob)
        try:
            key_type = reader.string()
            raw = reader.string()
        except BadKey as exc:
            raise BadKey("not an ssh-ed25519 public key blob") from exc
        if key_type != _KEY_TYPE or len(raw) != PUBLIC_BYTES or reader.pos != len(blob):
            raise BadKey("not an ssh-ed25519 public key blob")
        return cls(raw)

    def openssh_line(self) -> str:
        line = "ssh-ed25519 " + base64.b64encode(self.wire).decode("ascii")
        return f"{line} {self.comment}" if self.comment else line

    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -lf`` prints it."""
        digest = hashlib.sha256(self.wire).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")

    def verify(self, signature: bytes, data: bytes) -> bool:
        return backend().verify(self.raw, signature, data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return hmac.compare_digest(self.raw, other.raw)

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.fingerprint()})"


class PrivateKey:
    """An Ed25519 private key (its 32-byte seed). Never printed: its repr shows the public
    fingerprint only."""

    __slots__ = ("_seed", "public_key")

    def __init__(self, seed: bytes, comment: str = "") -> None:
        if len(seed) != SEED_BYTES:
            raise BadKey(f"an Ed25519 private key seed has 32 bytes, not {len(seed)}")
        self._seed = bytes(seed)
        self.public_key = PublicKey(backend().public_from_seed(self._seed), comment)

    @classmethod
    def generate(cls, comment: str = "") -> PrivateKey:
        return cls(os.urandom(SEED_BYTES), comment)

    def sign(self, data: bytes) -> bytes:
        return backend().sign(self._seed, data)

    def openssh_pem(self) -> bytes:
        """The key in OpenSSH's ``-----BEGIN OPENSSH PRIVATE KEY-----`` format, unencrypted."""
        public = self.public_key
        check = os.urandom(4)
        private = (
            check
            + check
            + _ssh_string(_KEY_TYPE)
            + _ssh_string(public.raw)
            + _ssh_string(self._seed + public.raw)
            + _ssh_string(public.comment.encode())
        )
        private += bytes(range(1, 1 + (-len(private) % 8)))
        body = (
            _MAGIC
            + _ssh_string(b"none")
            + _ssh_string(b"none")
            + _ssh_string(b"")
            + struct.pack(">I", 1)
            + _ssh_string(public.wire)
            + _ssh_string(private)
        )
        text = base64.b64encode(body).decode("ascii")
        lines = [text[i : i + 70] for i in range(0, len(text), 70)]
        return ("\n".join([_BEGIN, *lines, _END]) + "\n").encode("ascii")

    def __repr__(self) -> str:
        return f"PrivateKey(public={self.public_key.fingerprint()})"


def _parse_openssh(text: str) -> PrivateKey:
    start = text.index(_BEGIN) + len(_BEGIN)
    end = text.find(_END, start)
    if end < 0:
        raise BadKey("the OpenSSH private key has no END line")
    try:
        body = base64.b64decode("".join(text[start:end].split()), validate=True)
    except binascii.Error as exc:
        raise BadKey("the OpenSSH private key's base64 is malformed") from exc
    if not body.startswith(_MAGIC):
        raise BadKey("not an openssh-key-v1 private key")
    reader = _Reader(body[len(_MAGIC) :])
    cipher, kdf = reader.string(), reader.string()
    reader.string()  # kdf options
    if cipher != b"none" or kdf != b"none":
        raise BadKey(
            "the private key is encrypted; the agent and core need it unencrypted "
            "(ssh-keygen -p -N '' -f FILE), kept readable by their user only"
        )
    if reader.uint32() != 1:
        raise BadKey("the private key file holds more than one key")
    public_blob = reader.string()
    section = _Reader(reader.string())
    if section.uint32() != section.uint32():
        raise BadKey("the private key's check numbers differ (corrupt file)")
    key_type = section.string()
    if key_type != _KEY_TYPE:
        raise BadKey(
            f"the private key is {key_type.decode(errors='replace')}, not Ed25519 (ssh-ed25519)"
        )
    public_raw = section.string()
    secret = section.string()
    comment = section.string().decode(errors="replace")
    if len(secret) != 64 or secret[32:] != public_raw:
        raise BadKey("the private key's secret part is malformed")
    key = PrivateKey(secret[:32], comment)
    if key.public_key != PublicKey.from_wire(public_blob):
        raise BadKey("the private key does not match its public key (corrupt file)")
    return key


def parse_private_key(data: bytes) -> PrivateKey:
    """Load an unencrypted OpenSSH (or PKCS#8 PEM) Ed25519 private key."""
    text = data.decode("ascii", errors="replace")
    if _BEGIN in text:
        return _parse_openssh(text)
    if "-----BEGIN" not in text:
        raise BadKey("cannot load the private key: not a PEM or OpenSSH key file")
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadKey(f"cannot load the private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BadKey(f"the private key is {type(key).__name__}, not Ed25519 (ssh-ed25519)")
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return PrivateKey(seed)


def parse_public_key(line: str) -> PublicKey:
    """Parse an ``ssh-ed25519 AAAA... [comment]`` line (an authorized_keys or .pub line)."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise BadKey("a public key line reads 'ssh-ed25519 AAAA... [comment]'")
    if parts[0] != "ssh-ed25519":
        raise BadKey(f"the public key is {parts[0]!r}, not ssh-ed25519")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error as exc:
        raise BadKey("the public key's base64 part is malformed") from exc
    key = PublicKey.from_wire(blob)
    return PublicKey(key.raw, parts[2] if len(parts) > 2 else "")


def looks_like_public_key_line(spec: str) -> bool:
    """True when ``spec`` is a key line rather than a path to a ``.pub`` file."""
    return spec.lstrip().startswith("ssh-")


def permissions_problem(path: str, mode: int, owner: int, uid: int) -> str | None:
    """Why a private key file must not be used, as OpenSSH decides (``authfile.c``,
    ``sshkey_perm_ok``): a key owned by the user who reads it must not be accessible by group
    or others. None when it may be used."""
    if owner == uid and mode & 0o077:
        return (
            f"permissions {mode & 0o7777:04o} for {path} are too open: a private key must not be"
            f" accessible by group or others (run: chmod 600 {path})"
        )
    return None
