"""Errors of the wire protocol and the channel.

::

    ProtocolError
    ├── FrameError              a frame could not be decoded (malformed, unknown type, too big)
    ├── HandshakeFailed         authentication did not complete; the connection is closed
    │                           (the reason is for our own log only, never sent to the peer)
    │   └── VersionMismatch     the peer speaks another protocol version
    ├── BadKey                  a key could not be parsed or loaded
    └── ChannelError            the channel cannot carry a request
        ├── ChannelClosed       the connection ended (peer gone, heartbeat lost, closed by us)
        ├── SealBroken          a message did not open (forged, modified, replayed, reordered,
        │                       dropped): the channel closes at once
        ├── RemoteError         the peer answered a request with a typed error
        └── RequestRejected     the peer refused to start a request (busy, duplicate id)

Library errors (aiohttp, msgspec, cryptography) are translated at the boundary with
``raise X from exc``.
"""

from __future__ import annotations

from protocol.messages import ErrorCode


class ProtocolError(Exception):
    """Base of every error of the protocol package."""


class FrameError(ProtocolError):
    """A frame could not be decoded."""


class HandshakeFailed(ProtocolError):
    """The mutual authentication failed. The reason is logged locally, never sent."""


class VersionMismatch(HandshakeFailed):
    """The peer speaks another protocol version. Not secret: the close reason says it.

    ``reply`` is our hello, sent before closing so an older dialer's own check reports the
    mismatch too."""

    def __init__(self, message: str, reply: bytes = b"") -> None:
        super().__init__(message)
        self.reply = reply


class BadKey(ProtocolError):
    """A key could not be parsed (wrong type, malformed, encrypted without passphrase)."""


class ChannelError(ProtocolError):
    """The channel cannot carry the request."""


class ChannelClosed(ChannelError):
    """The connection ended before the request finished."""


class SealBroken(ChannelError):
    """A sealed message did not open at its position; nothing in it is acted on."""


class RemoteError(ChannelError):
    """The peer answered with a typed error."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


class RequestRejected(RemoteError):
    """The peer refused to start the request (too many in flight, duplicate id)."""
