"""Sealing of every channel message after the handshake (pure, no I/O).

Each websocket message after the handshake is one ChaCha20-Poly1305 ciphertext with its tag,
nothing else on the wire. Each direction has its own key (``SessionKeys``, from the handshake)
and its own message counter, starting at 0; the nonce is 4 zero bytes and the counter as 64-bit
little-endian, never sent. So a message opens only under the exact key and position it was
sealed for: a forged, modified, injected, replayed, reordered or dropped message (and a message
reflected back to its sender) fails to open, and the first one that fails closes the channel.

When a message fails, ``Opener`` looks a few positions back and ahead to say which it was
(a replay of message 3, a message 7 where 5 was due), for the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.aead import KEY_BYTES, TAG_BYTES, Buffer, backend, hkdf_sha256
from protocol.exceptions import SealBroken

_NONCE_PREFIX = bytes(4)
_DIAGNOSE_WINDOW = 8  # positions looked at either side of the expected one, on failure only
_DIAGNOSE_MAX_BYTES = 4 * 1024 * 1024  # larger failed messages are not looked into
_COUNTER_LIMIT = 1 << 63
_KEYS_INFO = b"stackward channel v2 keys"
OVERHEAD = TAG_BYTES


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """One channel's keys: what we seal with and what we open with."""

    send: bytes
    receive: bytes

    def __repr__(self) -> str:
        return "SessionKeys(<hidden>)"


def derive_keys(shared_secret: bytes, transcript: bytes, *, dialer: bool) -> SessionKeys:
    """The two direction keys from the X25519 secret, bound to the signed transcript's hash."""
    okm = hkdf_sha256(shared_secret, salt=transcript, info=_KEYS_INFO, length=2 * KEY_BYTES)
    to_listener, to_dialer = okm[:KEY_BYTES], okm[KEY_BYTES:]
    if dialer:
        return SessionKeys(send=to_listener, receive=to_dialer)
    return SessionKeys(send=to_dialer, receive=to_listener)


def _nonce(counter: int) -> bytes:
    return _NONCE_PREFIX + counter.to_bytes(8, "little")


class Sealer:
    """Seals our messages in order; message ``n`` under nonce ``n``."""

    __slots__ = ("_aead", "sealed")

    def __init__(self, key: bytes) -> None:
        self._aead = backend().aead(key, encrypt=True)
        self.sealed = 0  # messages sealed so far: the next one's position

    def _next(self) -> bytes:
        counter = self.sealed
        if counter >= _COUNTER_LIMIT:
            raise SealBroken("the channel sealed 2**63 messages; it must be re-opened")
        self.sealed = counter + 1
        return _NONCE_PREFIX + counter.to_bytes(8, "little")

    def seal(self, data: Buffer) -> bytes | bytearray:
        return self._aead.seal(self._next(), data)

    def seal_in_place(self, buffer: bytearray, start: int, end: int) -> None:
        """Seal ``buffer[start:end]`` where it is; its tag goes to ``buffer[end:end+16]``."""
        self._aead.seal_in_place(self._next(), buffer, start, end)


class Opener:
    """Opens the peer's messages, each at exactly its position, or raises ``SealBroken``."""

    __slots__ = ("_aead", "opened", "source")

    def __init__(self, key: bytes, source: str = "the peer") -> None:
        self._aead = backend().aead(key, encrypt=False)
        self.opened = 0  # messages opened so far: the position due next
        self.source = source  # for reasons: "message 3 from the core"

    def open(self, data: Buffer) -> bytes | bytearray:
        counter = self.opened
        plain = self._aead.open(_NONCE_PREFIX + counter.to_bytes(8, "little"), data)
        if plain is None:
            raise SealBroken(self._diagnose(data, counter))
        self.opened = counter + 1
        return plain

    def _diagnose(self, data: Buffer, due: int) -> str:
        head = f"message {due} from {self.source} does not open"
        if len(data) < TAG_BYTES:
            return f"{head}: {len(data)} bytes, shorter than a seal"
        if len(data) <= _DIAGNOSE_MAX_BYTES:
            low = max(0, due - _DIAGNOSE_WINDOW)
            for position in range(low, due + _DIAGNOSE_WINDOW + 1):
                if position != due and self._aead.open(_nonce(position), data) is not None:
                    if position < due:
                        return f"{head}: it is a replay of message {position}"
                    return (
                        f"{head}: it is message {position}"
                        f" ({position - due} dropped or reordered before it)"
                    )
        return f"{head}: forged, modified or injected (authentication failed)"
