"""The baseline: a plain aiohttp websocket server, in its own process like a periphery.

``/echo`` answers every binary frame with itself; ``/bulk?bytes=N&chunk=C`` sends N bytes in
C-byte frames and closes; ``/run?bytes=N`` runs ``head -c N /dev/zero`` and sends its stdout as
it reads it, a frame per read: the periphery's own pipe and read loop (``periphery.process``: a
1 MiB pipe, reads of up to 1 MiB) and the channel's writer depth (4 MiB queued before waiting),
with nothing of the channel (no framing, sealing or flow control).

The process is otherwise stock aiohttp on stock asyncio and glibc. Not given: the periphery's
malloc tuning (``protocol.memory.keep_large_buffers``). With it, this server's echo is about 20%
faster (asyncio's 256 KiB receive buffer per read is no longer mapped and unmapped by glibc).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The periphery's own pipe and read loop, and the channel's writer depth: the same I/O.
from periphery.process import _pipe, _pump  # noqa: E402
from protocol.channel import ChannelSettings  # noqa: E402

WRITE_BUFFER_BYTES = ChannelSettings().write_buffer_bytes


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024, compress=False)
    await ws.prepare(request)
    async for msg in ws:
        await ws.send_bytes(msg.data)
    return ws


async def bulk(request: web.Request) -> web.WebSocketResponse:
    total = int(request.query["bytes"])
    chunk = b"\0" * int(request.query["chunk"])
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024, compress=False)
    await ws.prepare(request)
    sent = 0
    while sent < total:
        await ws.send_bytes(chunk)
        sent += len(chunk)
    await ws.close()
    return ws


async def run(request: web.Request) -> web.WebSocketResponse:
    total = int(request.query["bytes"])
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024, compress=False)
    await ws.prepare(request)
    transport = request.transport
    assert transport is not None
    transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)  # as the channel does
    read_end, write_end = _pipe()
    child = await asyncio.create_subprocess_exec(
        "head", "-c", str(total), "/dev/zero", stdout=write_end
    )
    os.close(write_end)
    try:
        await _pump(read_end, ws.send_bytes)
    finally:
        os.close(read_end)
        await child.wait()
    await ws.close()
    return ws


def main() -> None:
    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/bulk", bulk)
    app.router.add_get("/run", run)

    runner_port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    web.run_app(
        app, host="127.0.0.1", port=runner_port, print=None, access_log=None, handle_signals=True
    )


if __name__ == "__main__":
    main()
