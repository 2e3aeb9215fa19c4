"""The core's HTTP application: ``/api/...`` (bearer token), ``/ws/events`` and ``/healthz``.

``build_app(config)`` returns an :class:`aiohttp.web.Application`. Other parts of the core extend
it without editing this module: pass ``setup=[fn, ...]`` (each ``fn(app)`` may add routes,
``on_startup`` / ``cleanup_ctx`` hooks, or values under its own :class:`web.AppKey`), or add them
to the returned app before it starts. The bearer-token check applies to paths under the prefixes in
``app[PROTECTED_PREFIXES]`` (``/api/`` by default); a websocket route with its own handshake (the
periphery channel) is not under it.

Errors always have one JSON shape: ``{"error": {"code": "...", "message": "..."}}`` (plus
``"findings"`` for invalid resource files).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

import anyio.to_thread
import msgspec
from aiohttp import web

from core.config import CoreConfig
from core.events.bus import EventBus
from core.events.model import Kind, PlanMade, ResourceApplied
from core.events.stream import EventStream
from core.exceptions import (
    CoreError,
    PlanError,
    PlanNotFound,
    PlanStale,
    ResourceError,
    StoreError,
    SyncNotFound,
)
from core.plan.models import Plan
from core.plan.service import SyncService
from core.store import Store

log = logging.getLogger(__name__)


class AfterApply(Protocol):
    """Called after an apply committed; what it returns is added to the apply's answer."""

    async def __call__(self, app: web.Application, sync: str, plan: Plan) -> dict[str, Any]: ...


CONFIG = web.AppKey("config", CoreConfig)
AFTER_APPLY = web.AppKey("after_apply", AfterApply)
STORE = web.AppKey("store", Store)
SYNCS = web.AppKey("syncs", SyncService)
PROTECTED_PREFIXES = web.AppKey("protected_prefixes", list[str])
EVENTS = web.AppKey("events", EventBus)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_encoder = msgspec.json.Encoder()


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return json_response({"error": {"code": code, "message": message, **extra}}, status)


def bearer_ok(request: web.Request, tokens: Sequence[str]) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    given = token.strip().encode()
    ok = False
    for t in tokens:  # compare with every token, constant time each, no early exit
        ok |= hmac.compare_digest(given, t.encode())
    return ok


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
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
            message = f"request body too large: at most {request.app[CONFIG].max_body_bytes} bytes"
        return error_response(exc.status, code, message or exc.reason)
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
        return error_response(500, "store_error", str(exc))
    except CoreError as exc:
        return error_response(400, "error", str(exc))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; see the core's log")


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if any(request.path.startswith(p) for p in request.app[PROTECTED_PREFIXES]):
        if not bearer_ok(request, request.app[CONFIG].api_tokens):
            return error_response(
                401,
                "unauthorized",
                "missing or wrong bearer token: send Authorization: Bearer"
                " TOKEN with a token from the core's api_tokens",
            )
    return await handler(request)


def _plan_json(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(plan)
    out["counts"] = plan.counts()
    return out


async def _healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _list_resources(request: web.Request) -> web.Response:
    store = request.app[STORE]
    kind = request.query.get("kind")
    rev, resources = await anyio.to_thread.run_sync(store.snapshot)
    items = [
        {"kind": r.kind, "name": r.name, "sync": r.sync, "hash": r.hash, **r.config}
        for r in resources.values()
        if kind is None or r.kind == kind
    ]
    return json_response({"revision": rev, "resources": items})


async def _list_syncs(request: web.Request) -> web.Response:
    names = await anyio.to_thread.run_sync(request.app[SYNCS].sync_names)
    return json_response({"syncs": names})


def publish_plan(app: web.Application, plan: Plan) -> None:
    app[EVENTS].publish(
        Kind.PLAN_MADE,
        f"sync:{plan.sync}",
        PlanMade(
            plan=plan.id,
            sync=plan.sync,
            commit=plan.commit or "",
            counts=plan.counts(),
            deploys=[d.stack for d in plan.deploys],
        ),
    )


def publish_applied(app: web.Application, plan: Plan) -> None:
    bus = app[EVENTS]
    for change in plan.changes:
        bus.publish(
            Kind.RESOURCE_APPLIED,
            f"{change.kind}:{change.name}",
            ResourceApplied(
                plan=plan.id,
                sync=plan.sync,
                type=change.kind,
                name=change.name,
                action=change.action,
            ),
        )


async def _plan(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    plan = await anyio.to_thread.run_sync(request.app[SYNCS].plan, name)
    publish_plan(request.app, plan)
    return json_response(_plan_json(plan), 201)


async def _get_plan(request: web.Request) -> web.Response:
    plan = await anyio.to_thread.run_sync(request.app[STORE].get_plan, request.match_info["id"])
    return json_response(_plan_json(plan))


async def _apply(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        body = await request.json(loads=msgspec.json.decode)
    except msgspec.DecodeError:
        return error_response(400, "bad_request", 'body must be JSON: {"plan_id": "..."}')
    plan_id = body.get("plan_id") if isinstance(body, dict) else None
    if not isinstance(plan_id, str) or not plan_id:
        return error_response(
            400,
            "bad_request",
            'body must name the plan to apply: {"plan_id": "..."}; make one'
            f" with POST /api/syncs/{name}/plan",
        )
    plan, revision = await anyio.to_thread.run_sync(request.app[SYNCS].apply, name, plan_id)
    publish_applied(request.app, plan)
    answer: dict[str, Any] = {"plan": _plan_json(plan), "revision": revision}
    after = request.app.get(AFTER_APPLY)
    if after is not None:
        answer.update(await after(request.app, name, plan))
    return json_response(answer)


def build_app(
    config: CoreConfig,
    *,
    store: Store | None = None,
    events: EventBus | None = None,
    setup: Sequence[Callable[[web.Application], None]] = (),
) -> web.Application:
    """The core's application. ``store`` defaults to the one in ``config.data_dir``, opened at
    startup and closed at cleanup; ``events`` to a bus that keeps events in memory only;
    ``setup`` functions extend the app (routes, hooks)."""
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_errors, _auth])
    app[CONFIG] = config
    app[PROTECTED_PREFIXES] = ["/api/"]
    app[EVENTS] = events if events is not None else EventBus(None)
    stream = EventStream(app[EVENTS], config.api_tokens, config.event_origins, config.event_queue)

    async def state(app: web.Application) -> AsyncIterator[None]:
        own = store is None
        st = (
            store
            if store is not None
            else await anyio.to_thread.run_sync(Store.open, config.data_dir)
        )
        app[STORE] = st
        app[SYNCS] = await anyio.to_thread.run_sync(SyncService, config, st)
        yield
        if own:
            st.close()

    app.cleanup_ctx.append(state)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/ws/events", stream.handle)
    app.router.add_get("/api/resources", _list_resources)
    app.router.add_get("/api/syncs", _list_syncs)
    app.router.add_post("/api/syncs/{name}/plan", _plan)
    app.router.add_post("/api/syncs/{name}/apply", _apply)
    app.router.add_get("/api/plans/{id}", _get_plan)
    for fn in setup:
        fn(app)
    return app
