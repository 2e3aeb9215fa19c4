"""``GET /api/servers``: the known servers, which are connected, and why any is left out."""

from __future__ import annotations

from aiohttp import web

from core.api.http import json_response
from core.api.state import parts


async def servers(request: web.Request) -> web.Response:
    core = parts(request)
    pool = core.pool
    if pool is None:
        return json_response({"servers": [], "problems": ["the core has no private_key"]})
    connected = pool.connected()
    problems = await core.refresh_servers()
    names = sorted(pool.known())
    return json_response(
        {
            "servers": [
                {
                    "name": n,
                    "connected": n in connected,
                    "key": connected[n].public_key.fingerprint() if n in connected else None,
                }
                for n in names
            ],
            "problems": problems,
        }
    )


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/servers", servers)
