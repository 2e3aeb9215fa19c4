"""An unauthenticated flood, run as its own process (so the test's process stays responsive):

    python -m tests.support.flood HOST:PORT[/PATH] [HOST:PORT/PATH ...] --idle N --frames M

For each target it keeps ``N`` idle TCP sockets open (one the server closes is opened again
after ``--reopen`` seconds) and ``M`` connections that upgrade to a websocket at PATH and send
one 16 MiB binary frame each, again and again. It prints ``ready`` once every idle socket has
been opened the first time, and on SIGTERM one JSON line of counts per target.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass

FRAME_BYTES = 16 * 1024 * 1024
PIECE = 1024 * 1024


@dataclass
class Counts:
    target: str
    idle_opened: int = 0
    idle_closed_by_server: int = 0
    frames_started: int = 0
    frame_bytes_sent: int = 0
    frames_refused: int = 0


def _frame_head(size: int) -> bytes:
    # FIN + binary; masked (a client's frames are), 64-bit length; the mask key is zeros.
    return bytes((0x82, 0x80 | 127)) + size.to_bytes(8, "big") + bytes(4)


async def _idle(host: str, port: int, counts: Counts, opened: asyncio.Event, reopen: float) -> None:
    first = True
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(reopen)
            continue
        counts.idle_opened += 1
        if first:
            first = False
            opened.set()
        try:
            await reader.read()  # until the server closes it
        except OSError:
            pass
        counts.idle_closed_by_server += 1
        writer.close()
        await asyncio.sleep(reopen)


async def _frames(host: str, port: int, path: str, counts: Counts, payload: memoryview) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    while True:
        writer = None
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await reader.readuntil(b"\r\n\r\n")
            counts.frames_started += 1
            writer.write(_frame_head(FRAME_BYTES))
            for start in range(0, FRAME_BYTES, PIECE):
                writer.write(payload[start : start + PIECE])
                await writer.drain()
                counts.frame_bytes_sent += PIECE
            await reader.read()
        except (OSError, asyncio.IncompleteReadError):
            counts.frames_refused += 1
            await asyncio.sleep(0.01)
        finally:
            if writer is not None:
                writer.close()


async def main(args: argparse.Namespace) -> None:
    payload = memoryview(bytes(FRAME_BYTES))
    all_counts: list[Counts] = []
    opened: list[asyncio.Event] = []
    tasks: list[asyncio.Task[None]] = []
    for target in args.targets:
        address, _, path = target.partition("/")
        host, _, port = address.rpartition(":")
        counts = Counts(target)
        all_counts.append(counts)
        for _ in range(args.idle):
            event = asyncio.Event()
            opened.append(event)
            tasks.append(asyncio.create_task(_idle(host, int(port), counts, event, args.reopen)))
        for _ in range(args.frames):
            tasks.append(asyncio.create_task(_frames(host, int(port), "/" + path, counts, payload)))
    for event in opened:
        await event.wait()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    for counts in all_counts:
        print(json.dumps(asdict(counts)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="+", metavar="HOST:PORT/PATH")
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--reopen", type=float, default=0.1)
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
