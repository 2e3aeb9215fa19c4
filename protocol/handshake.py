"""The mutual Ed25519 handshake, as pure state machines (no I/O).

The dialer (client) and the listener (server) each prove they hold their private key by signing
a transcript that binds, in a fixed encoding:

- the protocol version,
- this connection: the websocket accept key, the host and path the client asked for, and the
  SHA-256 of the TLS server certificate as each side sees it (empty for plain ``ws://``), so a
  recorded or relayed handshake does not verify on another connection,
- both roles, both fresh 32-byte nonces, both public keys, and the name a dialing periphery
  gives,
- both ephemeral X25519 public keys, made for this connection only.

Once both signatures verified, each side has the X25519 secret of the two ephemeral keys; HKDF
over it, salted with the transcript hash, gives one key per direction (``protocol.sealing``),
and every message after the handshake is sealed. The ephemeral private keys are dropped then:
a stolen long-term key can impersonate in future, but does not open recorded traffic.

Each signature also carries a label of who signs (``client`` / ``server``), so one side's proof
can never be reflected back as the other's. The client proves itself first, so a listener never
signs anything for a peer it has not authenticated. Messages::

    client                                   server
      ClientHello(version, role, nonce_c, key_c, name, eph_c) ─►
                        ◄─ ServerHello(version, role, nonce_s, key_s, eph_s)
      ClientProof(sig_c) ─►                  verify sig_c, authorize key_c for role/name
                        ◄─ ServerProof(sig_s)
      verify sig_s against the pinned key
    both: keys = HKDF(X25519(eph, peer eph), salt=transcript hash)

A peer of another protocol version gets ``VersionMismatch``: "protocol version N, this agent
speaks M" (a listener answers an old dialer's hello with its own first, so the old dialer's
check says it too). Every other failure raises ``HandshakeFailed`` with a reason meant for the
local log; the transport closes the connection the same way whatever the reason.
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass

from protocol import codec
from protocol.aead import X25519_BYTES, backend
from protocol.exceptions import BadKey, FrameError, HandshakeFailed, VersionMismatch
from protocol.keys import PrivateKey, PublicKey
from protocol.messages import (
    PROTOCOL_VERSION,
    ClientHello,
    ClientProof,
    Role,
    ServerHello,
    ServerProof,
)
from protocol.sealing import SessionKeys, derive_keys

NONCE_BYTES = 32
_DOMAIN = b"stackward channel handshake v2"


@dataclass(frozen=True, slots=True)
class ConnectionBinding:
    """What identifies this one connection to both ends."""

    accept_key: str  # Sec-WebSocket-Accept
    host: str  # the Host header the client sent
    path: str  # the request path, e.g. /ws
    tls_server_cert_sha256: bytes = b""  # empty on plain ws://


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end, once the handshake succeeded."""

    role: Role
    public_key: PublicKey
    name: str
    software: str


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def transcript_digest(
    binding: ConnectionBinding, client: ClientHello, server: ServerHello
) -> bytes:
    """SHA-256 of the canonical transcript both sides sign."""
    parts = [
        _DOMAIN,
        struct.pack(">I", client.version),
        struct.pack(">I", server.version),
        binding.accept_key.encode(),
        binding.host.lower().encode(),
        binding.path.encode(),
        binding.tls_server_cert_sha256,
        client.role.value.encode(),
        client.nonce,
        client.public_key,
        client.name.encode(),
        server.role.value.encode(),
        server.nonce,
        server.public_key,
        client.ephemeral,
        server.ephemeral,
    ]
    return hashlib.sha256(b"".join(_field(p) for p in parts)).digest()


def _signed_data(label: bytes, digest: bytes) -> bytes:
    return _field(label) + _field(digest)


def _other(role: Role) -> Role:
    return Role.PERIPHERY if role is Role.CORE else Role.CORE


def _speaker(role: Role) -> str:
    return "agent" if role is Role.PERIPHERY else "core"


def version_message(peer_version: int, our_role: Role) -> str:
    return f"protocol version {peer_version}, this {_speaker(our_role)} speaks {PROTOCOL_VERSION}"


def _check_hello(
    version: int, role: Role, nonce: bytes, ephemeral: bytes, expected_role: Role
) -> None:
    if version != PROTOCOL_VERSION:
        raise VersionMismatch(version_message(version, _other(expected_role)))
    if role is not expected_role:
        raise HandshakeFailed(f"peer claims role {role.value}, expected {expected_role.value}")
    if len(nonce) != NONCE_BYTES:
        raise HandshakeFailed(f"peer nonce has {len(nonce)} bytes, expected {NONCE_BYTES}")
    if len(ephemeral) != X25519_BYTES:
        raise HandshakeFailed(
            f"peer ephemeral key has {len(ephemeral)} bytes, expected {X25519_BYTES}"
        )


def _session_keys(
    ephemeral_private: bytes, peer_ephemeral: bytes, digest: bytes, *, dialer: bool
) -> SessionKeys:
    try:
        shared = backend().x25519(ephemeral_private, peer_ephemeral)
    except ValueError as exc:
        raise HandshakeFailed(f"peer ephemeral key unusable: {exc}") from exc
    return derive_keys(shared, digest, dialer=dialer)


def _peer_key(blob: bytes) -> PublicKey:
    try:
        return PublicKey.from_wire(blob)
    except (BadKey, ValueError) as exc:
        raise HandshakeFailed(f"peer public key unusable: {exc}") from exc


class _State(enum.Enum):
    START = enum.auto()
    SENT_HELLO = enum.auto()
    SENT_PROOF = enum.auto()
    DONE = enum.auto()
    FAILED = enum.auto()


class ClientHandshake:
    """The dialer's side. ``start()`` gives the first message; feed each reply to ``receive``."""

    def __init__(
        self,
        *,
        private_key: PrivateKey,
        role: Role,
        trusted_server_keys: Collection[PublicKey],
        binding: ConnectionBinding,
        name: str = "",
        software: str = "",
        nonce: bytes | None = None,
    ) -> None:
        self._key = private_key
        self._role = role
        self._ephemeral, ephemeral_public = backend().x25519_keypair()
        if not trusted_server_keys:
            raise ValueError("at least one trusted server key is needed")
        self._trusted = tuple(trusted_server_keys)
        self._server_key: PublicKey | None = None
        self._binding = binding
        self._decoder = codec.server_handshake_decoder()
        self._hello = ClientHello(
            version=PROTOCOL_VERSION,
            role=role,
            nonce=nonce if nonce is not None else os.urandom(NONCE_BYTES),
            public_key=private_key.public_key.wire,
            name=name,
            software=software,
            ephemeral=ephemeral_public,
        )
        self._server_hello: ServerHello | None = None
        self._state = _State.START
        self.peer: Peer | None = None
        self.keys: SessionKeys | None = None

    def start(self) -> bytes:
        if self._state is not _State.START:
            raise HandshakeFailed("handshake already started")
        self._state = _State.SENT_HELLO
        return codec.encode(self._hello)

    def receive(self, data: bytes) -> bytes | None:
        """Consume one server message; returns the next message to send, if any."""
        try:
            return self._receive(data)
        except HandshakeFailed:
            self._state = _State.FAILED
            raise

    def _receive(self, data: bytes) -> bytes | None:
        try:
            message = self._decoder.decode(data)
        except FrameError as exc:
            raise HandshakeFailed(str(exc)) from exc
        match message:
            case ServerHello() if self._state is _State.SENT_HELLO:
                _check_hello(
                    message.version,
                    message.role,
                    message.nonce,
                    message.ephemeral,
                    _other(self._role),
                )
                key = _peer_key(message.public_key)
                if not any(key == trusted for trusted in self._trusted):
                    pinned = ", ".join(k.fingerprint() for k in self._trusted)
                    raise HandshakeFailed(
                        f"server key {key.fingerprint()} is not the pinned key ({pinned})"
                    )
                self._server_key = key
                self._server_hello = message
                digest = transcript_digest(self._binding, self._hello, message)
                self._state = _State.SENT_PROOF
                return codec.encode(
                    ClientProof(signature=self._key.sign(_signed_data(b"client", digest)))
                )
            case ServerProof() if self._state is _State.SENT_PROOF:
                assert self._server_hello is not None and self._server_key is not None
                digest = transcript_digest(self._binding, self._hello, self._server_hello)
                if not self._server_key.verify(message.signature, _signed_data(b"server", digest)):
                    raise HandshakeFailed("server signature does not verify")
                self.keys = _session_keys(
                    self._ephemeral, self._server_hello.ephemeral, digest, dialer=True
                )
                self._ephemeral = b""
                self._state = _State.DONE
                self.peer = Peer(
                    role=self._server_hello.role,
                    public_key=self._server_key,
                    name="",
                    software=self._server_hello.software,
                )
                return None
            case _:
                raise HandshakeFailed(
                    f"unexpected {type(message).__name__} in state {self._state.name}"
                )

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE


Authorizer = Callable[[Role, str, PublicKey], bool]
"""Decides whether a verified client key may connect in this role under this name."""


class ServerHandshake:
    """The listener's side. Feed each client message to ``receive``; send what it returns."""

    def __init__(
        self,
        *,
        private_key: PrivateKey,
        role: Role,
        authorize: Authorizer,
        binding: ConnectionBinding,
        software: str = "",
        nonce: bytes | None = None,
    ) -> None:
        self._key = private_key
        self._role = role
        self._authorize = authorize
        self._binding = binding
        self._decoder = codec.client_handshake_decoder()
        self._nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
        self._software = software
        self._ephemeral, self._ephemeral_public = backend().x25519_keypair()
        self._client_hello: ClientHello | None = None
        self._server_hello: ServerHello | None = None
        self._state = _State.START
        self.peer: Peer | None = None
        self.keys: SessionKeys | None = None

    def receive(self, data: bytes) -> bytes:
        try:
            return self._receive(data)
        except HandshakeFailed:
            self._state = _State.FAILED
            raise

    def _receive(self, data: bytes) -> bytes:
        try:
            message = self._decoder.decode(data)
        except FrameError as exc:
            raise HandshakeFailed(str(exc)) from exc
        match message:
            case ClientHello() if self._state is _State.START:
                self._server_hello = ServerHello(
                    version=PROTOCOL_VERSION,
                    role=self._role,
                    nonce=self._nonce,
                    public_key=self._key.public_key.wire,
                    software=self._software,
                    ephemeral=self._ephemeral_public,
                )
                try:
                    _check_hello(
                        message.version,
                        message.role,
                        message.nonce,
                        message.ephemeral,
                        _other(self._role),
                    )
                except VersionMismatch as exc:
                    # Our hello (public: no signature, nothing of the peer) lets an older
                    # dialer's own version check say what is wrong.
                    raise VersionMismatch(str(exc), codec.encode(self._server_hello)) from None
                _peer_key(message.public_key)
                self._client_hello = message
                self._state = _State.SENT_HELLO
                return codec.encode(self._server_hello)
            case ClientProof() if self._state is _State.SENT_HELLO:
                assert self._client_hello is not None and self._server_hello is not None
                hello = self._client_hello
                key = _peer_key(hello.public_key)
                digest = transcript_digest(self._binding, hello, self._server_hello)
                if not key.verify(message.signature, _signed_data(b"client", digest)):
                    raise HandshakeFailed("client signature does not verify")
                if not self._authorize(hello.role, hello.name, key):
                    who = f" as {hello.name!r}" if hello.name else ""
                    raise HandshakeFailed(f"client key {key.fingerprint()}{who} is not authorized")
                self.keys = _session_keys(self._ephemeral, hello.ephemeral, digest, dialer=False)
                self._ephemeral = b""
                self._state = _State.DONE
                self.peer = Peer(
                    role=hello.role, public_key=key, name=hello.name, software=hello.software
                )
                return codec.encode(
                    ServerProof(signature=self._key.sign(_signed_data(b"server", digest)))
                )
            case _:
                raise HandshakeFailed(
                    f"unexpected {type(message).__name__} in state {self._state.name}"
                )

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE
