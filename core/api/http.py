"""What every handler of the HTTP API shares: one JSON error shape, the access check (bearer
tokens, read-only viewer tokens, browser sessions with their CSRF token), body and path parsing
that answer 400 (not 500) to bad input, and the logging of request data.

Errors always have one JSON shape: ``{"error": {"code": "...", "message": "..."}}`` (plus
``"findings"`` for invalid resource files). Core errors are translated here, once.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from core.exceptions import (
    CoreError,
    PlanError,
    PlanNotFound,
    PlanStale,
    ResourceError,
    StoreError,
    SyncNotFound,
)
from core.web.sessions import COOKIE, CSRF_HEADER, Role, Session, Sessions, csrf_ok

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

MAX_ID = 2**63 - 1  # SQLite's INTEGER
_encoder = msgspec.json.Encoder()
_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)}


class BadRequest(CoreError):
    """The request itself is unusable (400): the message says what to send instead."""


def printable(text: object, limit: int = 300) -> str:
    """Request data for a log line: control characters escaped (a ``%0A`` in a path cannot
    forge a line), cut to ``limit`` characters."""
    shown = str(text).translate(_CONTROL)
    return shown if len(shown) <= limit else shown[:limit] + "..."


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return json_response({"error": {"code": code, "message": message, **extra}}, status)


def bearer_ok(request: web.Request, tokens: Sequence[str]) -> bool:
    """Whether the request carries one of ``tokens`` (constant time, every token compared)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    given = token.strip().encode()
    ok = False
    for t in tokens:
        ok |= hmac.compare_digest(given, t.encode())
    return ok


async def body_as(request: web.Request, kind: type[T], example: str) -> T:
    """The JSON body decoded as ``kind``; ``BadRequest`` (400) naming ``example`` otherwise,
    also for nesting too deep to decode."""
    raw = await request.read()
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadRequest(f"the body must be JSON like {example}: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest(f"the body is nested too deeply; send JSON like {example}") from exc


def path_id(request: web.Request, key: str = "id") -> int:
    """A numeric id from the path; ``BadRequest`` when it is not one SQLite can hold."""
    text = request.match_info[key]
    if not text.isdigit() or len(text) > 19 or int(text) > MAX_ID:
        raise BadRequest(f"{key} must be a positive number below 2^63, not {printable(text, 40)!r}")
    return int(text)


def query_int(request: web.Request, key: str, default: int, minimum: int = -1) -> int:
    text = request.query.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise BadRequest(f"{key} must be an integer") from exc
    if not minimum <= value <= MAX_ID:
        raise BadRequest(f"{key} must be between {minimum} and 2^63-1")
    return value


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            401: "unauthorized",
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
        }.get(exc.status, "http_error")
        message = exc.text if exc.text and not exc.text.startswith("<") else exc.reason
        if exc.status == 413:
            message = f"request body too large: at most {request.app._client_max_size} bytes"
        return error_response(exc.status, code, message or exc.reason)
    except BadRequest as exc:
        return error_response(400, "bad_request", str(exc))
    except PlanNotFound as exc:
        return error_response(404, "plan_not_found", str(exc))
    except SyncNotFound as exc:
        return error_response(404, "sync_not_found", str(exc))
    except PlanStale as exc:
        return error_response(409, "plan_stale", str(exc))
    except ResourceError as exc:
        return error_response(
            422, "invalid_resources", str(exc), findings=[str(f) for f in exc.findings]
        )
    except PlanError as exc:
        return error_response(409, "plan_error", str(exc))
    except StoreError as exc:
        log.error("state database error: %s", exc)
        return error_response(503, "store_error", str(exc))
    except CoreError as exc:
        return error_response(400, "error", str(exc))
    except Exception:
        log.exception(
            "unhandled error in %s %s", request.method, printable(request.rel_url.raw_path)
        )
        return error_response(500, "internal", "internal error; see the core's log")


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_role(given: str, tokens: Sequence[str], viewer_tokens: Sequence[str]) -> Role | None:
    """The role ``given`` grants (every token compared, in constant time), or None."""
    raw = given.strip().encode()
    operator = viewer = False
    for t in tokens:
        operator |= hmac.compare_digest(raw, t.encode())
    for t in viewer_tokens:
        viewer |= hmac.compare_digest(raw, t.encode())
    if not raw:
        return None
    return Role.OPERATOR if operator else Role.VIEWER if viewer else None


def same_origin(request: web.Request) -> bool:
    """Whether the request's ``Origin`` (when it has one) is the core's own: the host and port
    the browser asked for. A page of another site cannot send this (browsers set Origin)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def session_of(request: web.Request, sessions: Sessions | None) -> tuple[str, Session] | None:
    """The request's browser session (its id and record), from the cookie."""
    if sessions is None:
        return None
    session_id = request.cookies.get(COOKIE, "")
    session = sessions.find(session_id) if session_id else None
    return (session_id, session) if session is not None else None


def auth(
    prefixes: Sequence[str],
    tokens: Sequence[str],
    viewer_tokens: Sequence[str] = (),
    sessions: Sessions | None = None,
) -> Callable[..., Any]:
    """Who may call paths under ``prefixes``:

    - ``Authorization: Bearer TOKEN``: a token of ``api_tokens`` may do anything; one of
      ``viewer_tokens`` may read (GET, HEAD) and gets 403 for anything else; a wrong one 401;
    - else a browser session cookie (``core.web``): its role as above, and a state-changing
      request must also carry the session's CSRF token in ``X-Stackward-CSRF`` and, when it has
      an ``Origin``, come from the core's own origin (403 otherwise);
    - else 401.
    """

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not any(request.path.startswith(p) for p in prefixes):
            return await handler(request)
        unsafe = request.method not in SAFE_METHODS
        header = request.headers.get("Authorization")
        role: Role | None = None
        if header is not None:
            scheme, _, given = header.partition(" ")
            if scheme.lower() == "bearer":
                role = token_role(given, tokens, viewer_tokens)
        else:
            found = session_of(request, sessions)
            if found is not None:
                session_id, session = found
                if unsafe and not csrf_ok(session_id, request.headers.get(CSRF_HEADER, "")):
                    return error_response(
                        403,
                        "csrf",
                        f"a state-changing request from a browser session needs the {CSRF_HEADER}"
                        " header with the session's CSRF token (GET /auth/session)",
                    )
                if unsafe and not same_origin(request):
                    return error_response(
                        403, "cross_origin", "a state-changing request from another site"
                    )
                role = session.role
        if role is None:
            return error_response(
                401,
                "unauthorized",
                "missing or wrong bearer token: send Authorization: Bearer"
                " TOKEN with a token from the core's api_tokens",
            )
        if role is Role.VIEWER and unsafe:
            return error_response(
                403,
                "read_only",
                "a viewer token reads only: this needs a token from the core's api_tokens",
            )
        return await handler(request)

    return check
