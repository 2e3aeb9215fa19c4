"""How a handler reaches the core's parts: ``parts(request)``."""

from __future__ import annotations

from aiohttp import web

from core.parts import Core

CORE = web.AppKey("core", Core)


def parts(request: web.Request) -> Core:
    return request.app[CORE]
