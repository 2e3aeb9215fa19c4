"""Encoding and decoding of frames: one encoder, one decoder per direction and phase.

Pure: bytes in, typed messages out. Every decode failure, whatever msgspec raised, becomes a
``FrameError`` whose message says what was wrong, so callers can answer it with a typed error.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from protocol.exceptions import FrameError
from protocol.messages import (
    ClientHandshakeMessage,
    CoreFrame,
    PeripheryFrame,
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

    def decode(self, data: bytes) -> T:
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


def core_frame_decoder(max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> FrameDecoder[CoreFrame]:
    """What a periphery uses to read the core's frames."""
    return FrameDecoder(CoreFrame, max_bytes, "core frame")  # type: ignore[arg-type]


def periphery_frame_decoder(
    max_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> FrameDecoder[PeripheryFrame]:
    """What the core uses to read a periphery's frames."""
    return FrameDecoder(PeripheryFrame, max_bytes, "periphery frame")  # type: ignore[arg-type]


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
