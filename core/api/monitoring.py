"""``/healthz`` (the core is up), ``/metrics`` (Prometheus text, no token)."""

from __future__ import annotations

import anyio.to_thread
from aiohttp import web

from core.api.http import json_response
from core.api.state import parts
from core.metrics import render


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    core = parts(request)
    by_result, seconds = await anyio.to_thread.run_sync(core.records.finished_stats)
    pool = core.pool
    text = render(
        deploys_by_result=by_result,
        deploy_seconds=seconds,
        peripheries_connected=len(pool.connected()) if pool else 0,
        peripheries_known=len(pool.known()) if pool else 0,
        webhooks_by_verdict=core.webhooks.verdicts,
        events_dropped={str(s.id): s.dropped for s in core.events.subscribers()},
        events_dropped_gone=core.events.dropped_gone,
        events_published=core.events.published,
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/healthz", healthz)
    router.add_get("/metrics", metrics)
