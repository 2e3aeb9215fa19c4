"""``build_app``: the core's HTTP application, every area's routes on it."""


from __future__ import annotations

from aiohttp import web

from core.api import monitoring, procedures, runs, servers, stacks, syncs, updates
from core.api.http import auth, errors
from core.api.state import CORE
from core.parts import Core
from core.web import pages, signin
from core.web.pages import headers


def build_app(core: Core) -> web.Application:
    app = web.Application(
        client_max_size=core.config.max_body_bytes,
        middlewares=[
            headers,
            errors,
            auth(["/api/"], core.config.api_tokens, core.config.viewer_tokens, core.sessions),
        ],
    )
    app[CORE] = core
    app.router.add_get("/ws/events", core.stream.handle)
    if core.pool is not None:
        app.router.add_get("/ws/periphery", core.pool.handle_dial_in)
    core.webhooks.setup(app)
    for area in (monitoring, syncs, stacks, runs, servers, procedures, updates, signin, pages):
        area.routes(app.router)
    return app
