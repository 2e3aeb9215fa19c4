"""Resources, syncs, plans and applies:

- ``GET /api/resources[?kind=K]``: the applied resources (canonical, secrets masked);
- ``GET /api/syncs``: the syncs;
- ``POST /api/syncs/{name}/plan``: a plan (201), with each stack to deploy and why;
- ``POST /api/syncs/{name}/apply`` ``{"plan_id": "..."}``: apply it; the answer names the intent
  and the run that carries each deploy. With ``"if_unchanged": true`` (the dashboard's Apply)
  the sync is planned again first and a plan that differs from the one shown is refused (409
  ``plan_changed``, the new plan under ``error.plan``) instead of applied;
- ``GET /api/plans/{id}``.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import msgspec
from aiohttp import web

from core.api.http import body_as, error_response, json_response
from core.api.state import parts
from core.plan.models import Plan


class ApplyBody(msgspec.Struct, frozen=True):
    plan_id: str
    if_unchanged: bool = False


def _substance(plan: Plan) -> Any:
    """What a plan would do: its changes and the stacks it deploys (not its id or time)."""
    return (msgspec.to_builtins(plan.changes), sorted(d.stack for d in plan.deploys))


def plan_json(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(plan)
    out.pop("defines", None)  # a long list of keys: not for people
    out["counts"] = plan.counts()
    return out


async def list_resources(request: web.Request) -> web.Response:
    store = parts(request).store
    kind = request.query.get("kind")
    rev, resources = await anyio.to_thread.run_sync(store.snapshot)
    items = [
        {"kind": r.kind, "name": r.name, "sync": r.sync, "hash": r.hash, **r.config}
        for r in resources.values()
        if kind is None or r.kind == kind
    ]
    return json_response({"revision": rev, "resources": items})


async def list_syncs(request: web.Request) -> web.Response:
    names = await anyio.to_thread.run_sync(parts(request).syncs.sync_names)
    return json_response({"syncs": names})


async def plan(request: web.Request) -> web.Response:
    made = await parts(request).runner.plan(request.match_info["name"])
    return json_response(plan_json(made), 201)


async def get_plan(request: web.Request) -> web.Response:
    found = await anyio.to_thread.run_sync(parts(request).store.get_plan, request.match_info["id"])
    return json_response(plan_json(found))


async def apply(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body = await body_as(request, ApplyBody, '{"plan_id": "..."}')
    if not body.plan_id:
        from core.api.http import BadRequest

        raise BadRequest(
            'the body must name the plan to apply: {"plan_id": "..."}; make one'
            f" with POST /api/syncs/{name}/plan"
        )
    core = parts(request)
    if body.if_unchanged:
        shown = await anyio.to_thread.run_sync(core.store.get_plan, body.plan_id)
        fresh = await core.runner.plan(name)
        if _substance(fresh) != _substance(shown):
            return error_response(
                409,
                "plan_changed",
                f"the plan changed since plan {body.plan_id} was made: review plan {fresh.id}",
                plan=plan_json(fresh),
            )
    applied = await core.runner.apply(name, body.plan_id)
    return json_response({"plan": plan_json(applied.plan), **applied.answer()})


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/resources", list_resources)
    router.add_get("/api/syncs", list_syncs)
    router.add_post("/api/syncs/{name}/plan", plan)
    router.add_post("/api/syncs/{name}/apply", apply)
    router.add_get("/api/plans/{id}", get_plan)
