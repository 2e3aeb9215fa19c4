"""``GET /api/servers``: the known servers, which are connected (their agent's software and
when it was last heard from), and why any is left out."""

from __future__ import annotations

import time

import anyio.to_thread
from aiohttp import web

from core.api.http import json_response
from core.api.state import parts
from core.events.model import Kind


async def servers(request: web.Request) -> web.Response:
    core = parts(request)
    pool = core.pool
    if pool is None:
        return json_response({"servers": [], "problems": ["the core has no private_key"]})
    connected = pool.connected()
    problems = await core.refresh_servers()
    names = sorted(pool.known())
    seen: dict[str, float] = {}
    log = core.events.log
    if log is not None and any(n not in connected for n in names):
        kinds = [Kind.PERIPHERY_CONNECTED.value, Kind.PERIPHERY_LOST.value]
        seen = await anyio.to_thread.run_sync(log.latest, kinds)
    now = time.time()
    return json_response(
        {
            "servers": [
                {
                    "name": n,
                    "connected": n in connected,
                    "key": connected[n].public_key.fingerprint() if n in connected else None,
                    "software": connected[n].software if n in connected else None,
                    # connected: heard from within its heartbeat; else when it was lost
                    "last_seen": now if n in connected else seen.get(f"server:{n}"),
                }
                for n in names
            ],
            "problems": problems,
        }
    )


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/servers", servers)
