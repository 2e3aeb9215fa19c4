"""The baseline: a plain aiohttp websocket server, in its own process like a periphery.

``/echo`` answers every binary frame with itself; ``/bulk?bytes=N&chunk=C`` sends N bytes in
C-byte frames and closes. Prints ``listening on PORT`` when ready.
"""

from __future__ import annotations

import sys

from aiohttp import web


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


def main() -> None:
    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/bulk", bulk)

    runner_port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    web.run_app(
        app, host="127.0.0.1", port=runner_port, print=None, access_log=None, handle_signals=True
    )


if __name__ == "__main__":
    main()
