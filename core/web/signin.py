"""Signing in from a browser: ``/auth/login``, ``/auth/session``, ``/auth/logout``.

- ``POST /auth/login`` ``{"token": "..."}`` (JSON only, from the core's own origin): an
  ``api_tokens`` token signs in an operator, a ``viewer_tokens`` one a viewer. The answer sets
  the session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) and gives the role and the
  CSRF token; the token itself is never kept. Past 20 wrong tokens a minute from one address,
  wrong ones get 429 (a right one always passes);
- ``GET /auth/session``: the session's role, CSRF token and expiry (401 without one);
- ``POST /auth/logout``: ends the session (with its CSRF token) and clears the cookie.
"""

from __future__ import annotations

import logging
import secrets
import time

import anyio.to_thread
import msgspec
from aiohttp import web

from core.api.http import (
    body_as,
    error_response,
    json_response,
    printable,
    same_origin,
    session_of,
    token_role,
)
from core.api.state import parts
from core.web.sessions import COOKIE, CSRF_HEADER, Session, csrf_ok, csrf_token

log = logging.getLogger(__name__)

class Login(msgspec.Struct, frozen=True):
    token: str


def _answer(session_id: str, session: Session) -> dict[str, object]:
    return {
        "role": session.role.value,
        "csrf": csrf_token(session_id),
        "csrf_header": CSRF_HEADER,
        "expires": session.expires,
    }


async def login(request: web.Request) -> web.Response:
    core = parts(request)
    if core.sessions is None:
        return error_response(404, "not_found", "browser sign-in is off")
    if not same_origin(request):
        return error_response(403, "cross_origin", "sign in from the core's own page")
    if request.content_type != "application/json":
        return error_response(415, "json_only", 'send JSON: {"token": "..."}')
    body = await body_as(request, Login, '{"token": "..."}')
    role = token_role(body.token, core.config.api_tokens, core.config.viewer_tokens)
    address = request.remote or "unknown"
    if role is None:
        limiter = core.sessions.failures
        over = limiter.blocked(address, time.monotonic())
        limiter.record_failure(address, time.monotonic())
        log.warning("sign-in with a wrong token from %s", printable(address, 60))
        if over:
            return error_response(
                429, "too_many_failures", "too many failed sign-ins from here; try again later"
            )
        return error_response(401, "unauthorized", "that token is not one of the core's tokens")
    session_id = secrets.token_urlsafe(32)
    session, gone = core.sessions.open(session_id, role, body.token)
    await anyio.to_thread.run_sync(core.sessions.save, session, gone)
    log.info("signed in from %s as %s", printable(address, 60), role.value)
    response = json_response(_answer(session_id, session))
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(core.config.session_ttl),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def session(request: web.Request) -> web.Response:
    found = session_of(request, parts(request).sessions)
    if found is None:
        return error_response(401, "unauthorized", "not signed in")
    response = json_response(_answer(*found))
    response.headers["Cache-Control"] = "no-store"
    return response


async def logout(request: web.Request) -> web.Response:
    core = parts(request)
    found = session_of(request, core.sessions)
    if found is not None:
        session_id, _ = found
        if not csrf_ok(session_id, request.headers.get(CSRF_HEADER, "")):
            return error_response(403, "csrf", f"signing out needs the {CSRF_HEADER} header")
        if not same_origin(request):
            return error_response(403, "cross_origin", "sign out from the core's own page")
        assert core.sessions is not None
        await anyio.to_thread.run_sync(core.sessions.forget, core.sessions.close(session_id))
    response = json_response({"signed_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


def routes(router: web.UrlDispatcher) -> None:
    router.add_post("/auth/login", login)
    router.add_get("/auth/session", session)
    router.add_post("/auth/logout", logout)
