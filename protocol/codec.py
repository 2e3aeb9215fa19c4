"""Encoding and decoding of frames: one encoder, one decoder per direction and phase.

Pure: bytes in, typed messages out. Every decode failure, whatever msgspec raised, becomes a
``FrameError`` whose message says what was wrong, so callers can answer it with a typed error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import msgspec

from protocol.exceptions import FrameError
from protocol.messages import (
    ClientHandshakeMessage,
    CoreFrame,
    PeripheryFrameView,
    ServerHandshakeMessage,
)

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
"""The default cap on one frame, both directions; configurable per process."""

HANDSHAKE_MAX_BYTES = 4096
"""Handshake messages are small; anything larger is refused before decoding."""

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    """Encode any protocol message to msgpack bytes."""
    return _encoder.encode(message)


class FrameDecoder(Generic[T]):
    """Decodes one union of message types, refusing frames over ``max_bytes``."""

    __slots__ = ("_decoder", "max_bytes", "what")

    def __init__(self, union: type[T], max_bytes: int, what: str) -> None:
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(union)
        self.max_bytes = max_bytes
        self.what = what

    def decode(self, data: bytes | bytearray | memoryview) -> T:
        if len(data) > self.max_bytes:
            raise FrameError(
                f"{self.what} of {len(data)} bytes exceeds the cap of {self.max_bytes} bytes"
            )
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise FrameError(f"invalid {self.what}: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise FrameError(f"malformed {self.what}: {exc}") from exc


class BatchDecoder(Generic[T]):
    """Decodes a websocket message holding one frame, or a msgpack array of frames (a batch).

    Always returns a list, so the channel handles both the same way.
    """

    __slots__ = ("_inner",)

    def __init__(self, union: Any, max_bytes: int, what: str) -> None:
        self._inner: FrameDecoder[T | list[T]] = FrameDecoder(
            union | list[union],
            max_bytes,
            what,
        )

    def decode(self, data: bytes | bytearray | memoryview) -> list[T]:
        decoded = self._inner.decode(data)
        return decoded if isinstance(decoded, list) else [decoded]


def batch(frames: Sequence[bytes | memoryview]) -> bytes:
    """A msgpack array of already-encoded frames, without decoding or re-encoding them."""
    count = len(frames)
    if count < 16:
        header = bytes((0x90 | count,))
    elif count < 0x10000:
        header = b"\xdc" + count.to_bytes(2, "big")
    else:
        header = b"\xdd" + count.to_bytes(4, "big")
    return header + b"".join(frames)


def core_frame_decoder(max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> BatchDecoder[CoreFrame]:
    """What a periphery uses to read the core's frames."""
    return BatchDecoder(CoreFrame, max_bytes, "core frame")


def periphery_frame_decoder(
    max_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> BatchDecoder[PeripheryFrameView]:
    """What the core uses to read a periphery's frames (output as zero-copy views)."""
    return BatchDecoder(PeripheryFrameView, max_bytes, "periphery frame")


def client_handshake_decoder() -> FrameDecoder[ClientHandshakeMessage]:
    """What the listener uses to read the dialer's handshake messages."""
    return FrameDecoder(
        ClientHandshakeMessage,  # type: ignore[arg-type]
        HANDSHAKE_MAX_BYTES,
        "handshake message",
    )


def server_handshake_decoder() -> FrameDecoder[ServerHandshakeMessage]:
    """What the dialer uses to read the listener's handshake messages."""
    return FrameDecoder(
        ServerHandshakeMessage,  # type: ignore[arg-type]
        HANDSHAKE_MAX_BYTES,
        "handshake message",
    )
