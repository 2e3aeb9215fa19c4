"""A man in the middle for the agent channel: a real TCP relay that forwards the HTTP upgrade
and the four handshake messages untouched, then tampers with one websocket message in one
direction (RFC 6455 framing parsed by hand; client-to-server frames are masked).

Actions, on the first channel message of at least ``min_size`` bytes going ``to_server`` or
back: ``inject`` a forged frame before it, ``modify`` one byte of it, ``replay`` it, ``reorder``
it with the next message, ``drop`` it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field

HANDSHAKE_MESSAGES = 2  # per direction: hello and proof
ACTIONS = ("inject", "modify", "replay", "reorder", "drop")


@dataclass
class Frame:
    first: int  # FIN and opcode byte
    payload: bytes

    @property
    def opcode(self) -> int:
        return self.first & 0x0F

    def encode(self, masked: bool) -> bytes:
        size = len(self.payload)
        mask_bit = 0x80 if masked else 0
        if size < 126:
            head = bytes((self.first, mask_bit | size))
        elif size < 1 << 16:
            head = bytes((self.first, mask_bit | 126)) + size.to_bytes(2, "big")
        else:
            head = bytes((self.first, mask_bit | 127)) + size.to_bytes(8, "big")
        if not masked:
            return head + self.payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(self.payload))


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    try:
        first, second = await reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await reader.readexactly(8), "big")
        key = await reader.readexactly(4) if second & 0x80 else b""
        payload = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return Frame(first, payload)


@dataclass
class Plan:
    to_server: bool  # tamper with what the dialer sends (else with what the listener sends)
    action: str
    forged: bytes = b""  # for inject: the payload of the forged binary message
    min_size: int = 80
    done: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[int] = field(default_factory=list)  # sizes of channel messages passed, per dir


class Relay:
    def __init__(self, upstream_port: int, plan: Plan) -> None:
        self.upstream_port = upstream_port
        self.plan = plan
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Relay:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        one = asyncio.ensure_future(self._pump(reader, up_writer, to_server=True))
        two = asyncio.ensure_future(self._pump(up_reader, writer, to_server=False))
        self._tasks.update((one, two))
        await asyncio.wait((one, two), return_when=asyncio.FIRST_COMPLETED)
        for task in (one, two):
            task.cancel()
        for w in (writer, up_writer):
            w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, to_server: bool
    ) -> None:
        plan = self.plan
        try:
            writer.write(await reader.readuntil(b"\r\n\r\n"))  # the HTTP upgrade, as it is
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return
        handshake = HANDSHAKE_MESSAGES
        held: Frame | None = None
        mine = plan.to_server == to_server
        while True:
            frame = await read_frame(reader)
            if frame is None:
                return
            out: list[Frame] = [frame]
            if frame.opcode == 0x2 and handshake:
                handshake -= 1
            elif frame.opcode == 0x2 and mine and held is not None:
                out = [frame, held]  # reorder: the later message first
                held = None
                plan.done.set()
            elif (
                frame.opcode == 0x2
                and mine
                and not plan.done.is_set()
                and len(frame.payload) >= plan.min_size
            ):
                match plan.action:
                    case "inject":
                        out = [Frame(0x82, plan.forged), frame]
                    case "modify":
                        changed = bytearray(frame.payload)
                        changed[len(changed) // 2] ^= 0x01
                        out = [Frame(frame.first, bytes(changed))]
                    case "replay":
                        out = [frame, frame]
                    case "reorder":
                        held, out = frame, []
                    case "drop":
                        out = []
                if plan.action != "reorder":
                    plan.done.set()
            elif frame.opcode == 0x2 and mine:
                plan.seen.append(len(frame.payload))
            for item in out:
                writer.write(item.encode(masked=to_server))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
