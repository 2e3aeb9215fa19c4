"""One in-memory transport pair for unit tests (httpx's MockTransport idea): the two ends of a
websocket that never touch a socket, the real handshake run over them, and the real channel
drivers on top. ``on_wire`` sees (and may change or swallow) every message after the handshake,
to test what the channel does with tampered traffic without a relay.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import aiohttp
import anyio

from protocol.channel import ChannelSettings
from protocol.connect import Authenticated
from protocol.exceptions import HandshakeFailed
from protocol.handshake import ClientHandshake, ConnectionBinding, ServerHandshake
from protocol.keys import PrivateKey
from protocol.messages import Role

Tap = Callable[[str, bytes], list[bytes]]
"""``(direction, message) -> messages to deliver instead``; direction is "to_periphery" or
"to_core"."""


class MemoryWebSocket:
    """One end. ``send_bytes`` hands the message to the other end before it returns (so the
    order of sends is the order of delivery, as with aiohttp's synchronous write)."""

    def __init__(self, direction: str) -> None:
        self.direction = direction  # of what this end sends
        self.peer: MemoryWebSocket | None = None
        self.tap: Tap | None = None
        self._inbox: deque[aiohttp.WSMessage] = deque()
        self._arrived = anyio.Event()
        self._closed = False
        self.close_code: int | None = None

    def _deliver(self, message: aiohttp.WSMessage) -> None:
        self._inbox.append(message)
        self._arrived.set()

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None:
        if self._closed or self.peer is None:
            raise ConnectionResetError("the in-memory websocket is closed")
        messages = [bytes(data)]
        if self.tap is not None:
            messages = self.tap(self.direction, messages[0])
        for message in messages:
            self.peer._deliver(aiohttp.WSMessage(aiohttp.WSMsgType.BINARY, message, None))

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:  # noqa: ASYNC109
        while not self._inbox:
            if self._closed:
                return aiohttp.WSMessage(aiohttp.WSMsgType.CLOSED, None, None)
            self._arrived = anyio.Event()
            await self._arrived.wait()
        message = self._inbox.popleft()
        if message.type is aiohttp.WSMsgType.CLOSE:
            self._closed = True
            self.close_code = int(message.data)
        return message

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        if self._closed:
            return False
        self._closed = True
        self.close_code = code
        if self.peer is not None:
            self.peer._deliver(aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, code, message.decode()))
        self._arrived.set()
        return True

    @property
    def closed(self) -> bool:
        return self._closed


def socket_pair() -> tuple[MemoryWebSocket, MemoryWebSocket]:
    """(core's end, periphery's end)."""
    core, periphery = MemoryWebSocket("to_periphery"), MemoryWebSocket("to_core")
    core.peer, periphery.peer = periphery, core
    return core, periphery


def authenticated_pair(
    core_key: PrivateKey, periphery_key: PrivateKey
) -> tuple[Authenticated, Authenticated, MemoryWebSocket, MemoryWebSocket]:
    """The real handshake (the core dials) over a new pair; both ends ready for a channel."""
    binding = ConnectionBinding(accept_key="in-memory", host="memory", path="/ws")
    client = ClientHandshake(
        private_key=core_key,
        role=Role.CORE,
        trusted_server_keys=[periphery_key.public_key],
        binding=binding,
    )
    server = ServerHandshake(
        private_key=periphery_key,
        role=Role.PERIPHERY,
        authorize=lambda role, name, key: role is Role.CORE and key == core_key.public_key,
        binding=binding,
    )
    reply = client.receive(server.receive(client.start()))
    if reply is None:
        raise HandshakeFailed("the in-memory handshake did not complete")
    client.receive(server.receive(reply))
    assert client.peer and client.keys and server.peer and server.keys
    core_ws, periphery_ws = socket_pair()
    return (
        Authenticated(core_ws, client.peer, client.keys),
        Authenticated(periphery_ws, server.peer, server.keys),
        core_ws,
        periphery_ws,
    )


DEFAULT_SETTINGS = ChannelSettings()
