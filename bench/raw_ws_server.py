"""The baseline: a plain aiohttp websocket server, in its own process like a periphery.

``/echo`` answers every binary frame with itself; ``/bulk?bytes=N&chunk=C`` sends N bytes in
C-byte frames and closes; ``/run?bytes=N`` runs ``head -c N /dev/zero`` and sends its stdout as
it reads it, a frame per read: the periphery's own way of reading a command (a 1 MiB pipe, reads
of up to 1 MiB, 4 MiB queued in the socket's writer before waiting), with nothing of the channel
(no framing, sealing or flow control).

The process is otherwise stock aiohttp on stock asyncio and glibc. Not given: the periphery's
malloc tuning (``protocol.memory.keep_large_buffers``). With it, this server's echo is about 20%
faster (asyncio's 256 KiB receive buffer per read is no longer mapped and unmapped by glibc).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys

from aiohttp import web

_F_SETPIPE_SZ = 1031
PIPE_BYTES = 1024 * 1024
WRITE_BUFFER_BYTES = 4 * 1024 * 1024


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
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    fcntl.fcntl(read_end, _F_SETPIPE_SZ, PIPE_BYTES)
    os.set_blocking(read_end, False)
    child = await asyncio.create_subprocess_exec(
        "head", "-c", str(total), "/dev/zero", stdout=write_end
    )
    os.close(write_end)
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                data = os.read(read_end, PIPE_BYTES)
            except BlockingIOError:
                readable = loop.create_future()
                loop.add_reader(read_end, readable.set_result, None)
                try:
                    await readable
                finally:
                    loop.remove_reader(read_end)
                continue
            if not data:
                break
            await ws.send_bytes(data)
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
