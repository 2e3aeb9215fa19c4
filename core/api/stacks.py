"""Stacks: what is desired, what was deployed, what runs.

- ``GET /api/stacks``: the tier order (``tiers``) and every applied stack with its three states
  side by side: ``desired`` (the commit it should run), ``recorded`` (its last deploy: status,
  commit, reason, the failed step and last output lines), ``running`` (what the engine reported
  last), and ``converged`` with the reasons when not;
- ``GET /api/stacks/{name}``: the same for one stack, and its services as they run now (asked of
  its periphery): 200 when every service is healthy, 503 when not;
- ``POST /api/stacks/{name}/deploy[?exclusive=true]``: deploy it (an intent, ``api``): 202 with the
  run that carries it, which may be one already waiting for the stack (requests that arrive while
  it is busy join one follow-up). ``exclusive=true``: this exact run or nothing (409 when busy);
- ``GET /api/stacks/{name}/deploys[?limit=N]``: its deploys, newest first (20 unless told);
- ``GET /api/reconcile``: every stack's verdict and a summary; ``POST /api/reconcile``: deploy what
  is not converged now (what ``reconcile = "auto"`` does by itself);
- ``GET /status/NAME``: a short answer for uptime monitors (Uptime Kuma's HTTP monitor): 200
  healthy, 503 not, 404 unknown; open without a token only with ``public_status``.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
import msgspec
from aiohttp import web

from core.api.http import bearer_ok, error_response, json_response, query_int
from core.api.state import parts
from core.exceptions import CoreError
from core.parts import Core
from core.reconcile.convergence import Record, Verdict, summarize
from core.reconcile.reconciler import Busy, Intent, Refused
from protocol.exceptions import ChannelError
from protocol.messages import DeployMode, HealthGateReport, StackState

STATE_TIMEOUT = 10.0


def _view(
    name: str,
    cfg: dict[str, Any],
    entry: dict[str, Any],
    record: Record | None,
    verdict: Verdict | None,
    last: dict[str, Any] | None,
    sync: str,
) -> dict[str, Any]:
    rec = record or Record()
    return {
        "name": name,
        "sync": sync,
        "mode": "swarm" if cfg.get("swarm") else "compose",
        "tier": entry.get("tier", ""),
        "deploy": bool(entry.get("deploy", False)),
        "converged": verdict.converged if verdict else False,
        "reasons": list(verdict.reasons) if verdict else [],
        "retry_at": rec.retry_at or None,
        "desired": {"commit": ""},
        "recorded": last,
        "last_healthy": {"commit": rec.ok_commit} if rec.ok_spec else None,
        "engine": {"state": rec.engine, "detail": rec.engine_detail},
        "last_deploy": last,  # the name earlier clients read
    }


def _verdicts(core: Core) -> dict[str, Verdict]:
    return core.desired.verdicts()


async def list_stacks(request: web.Request) -> web.Response:
    core = parts(request)
    stored = await anyio.to_thread.run_sync(core.store.resources)
    records = await anyio.to_thread.run_sync(core.records.records)
    last = await anyio.to_thread.run_sync(core.records.last_deploys)
    verdicts = await anyio.to_thread.run_sync(_verdicts, core)
    desired = await anyio.to_thread.run_sync(core.desired.desired_commits)
    stacks = []
    for (kind, name), res in sorted(stored.items()):
        if kind != "stack":
            continue
        view = _view(
            name,
            res.config.get("config", {}),
            res.config,
            records.get(name),
            verdicts.get(name),
            last.get(name),
            res.sync,
        )
        view["desired"]["commit"] = desired.get(name, "")
        view["images"] = core.updates.view(name) if core.updates is not None else None
        stacks.append(view)
    tiers = await anyio.to_thread.run_sync(core.store.tiers)
    return json_response({"stacks": stacks, "tiers": tiers})


async def stack_status(request: web.Request) -> web.Response:
    """The stack as it runs now (200 when every service is healthy, else 503)."""
    core = parts(request)
    name = request.match_info["name"]
    status, body = await stack_health(core, name)
    if status != 404:
        records = await anyio.to_thread.run_sync(core.records.records)
        verdicts = await anyio.to_thread.run_sync(core.desired.verdicts, [name])
        desired = await anyio.to_thread.run_sync(core.desired.desired_commits)
        stored = await anyio.to_thread.run_sync(core.store.resources)
        res = stored[("stack", name)]
        view = _view(
            name,
            res.config.get("config", {}),
            res.config,
            records.get(name),
            verdicts.get(name),
            body.get("last_deploy"),
            res.sync,
        )
        view["desired"]["commit"] = desired.get(name, "")
        view["images"] = core.updates.view(name) if core.updates is not None else None
        body.update({k: v for k, v in view.items() if k not in ("name",)})
    return json_response(body, status)


async def public_status(request: web.Request) -> web.Response:
    core = parts(request)
    if not core.config.public_status and not bearer_ok(request, core.config.api_tokens):
        return error_response(401, "unauthorized", "missing or wrong bearer token")
    status, body = await stack_health(core, request.match_info["name"])
    short: dict[str, Any] = {k: body[k] for k in ("stack", "healthy", "error") if k in body}
    if "services" in body:
        short["unhealthy"] = [s["service"] for s in body["services"] if not s["healthy"]]
    return json_response(short, status)


async def stack_health(core: Core, name: str) -> tuple[int, dict[str, Any]]:
    stored = await anyio.to_thread.run_sync(core.store.resources)
    resource = stored.get(("stack", name))
    if resource is None:
        return 404, {
            "stack": name,
            "healthy": False,
            "error": {"code": "stack_not_found", "message": f"no stack named {name!r}"},
        }
    cfg: dict[str, Any] = resource.config.get("config", {})
    last = (await anyio.to_thread.run_sync(core.records.last_deploys)).get(name)
    body: dict[str, Any] = {"stack": name, "last_deploy": last}
    if core.pool is None:
        body.update(healthy=False, error="the core has no private_key: it talks to no periphery")
        return 503, body
    if cfg.get("swarm"):
        swarm = stored.get(("swarm", str(cfg["swarm"])))
        servers = list(swarm.config.get("config", {}).get("servers", [])) if swarm else []
        mode = DeployMode.SWARM
    else:
        servers, mode = [str(cfg.get("server", ""))], DeployMode.COMPOSE
    connected = core.pool.connected()
    server = next((s for s in servers if s in connected), servers[0] if servers else "")
    try:
        with anyio.fail_after(STATE_TIMEOUT):
            channel = await core.pool.channel(server, 5.0)
            result, _ = await channel.request(
                StackState(
                    mode=mode,
                    name=str(cfg.get("project_name") or name),
                    ignore_services=list(cfg.get("ignore_services", [])),
                )
            )
    except (CoreError, ChannelError, TimeoutError) as exc:
        body.update(healthy=False, error=f"server {server!r}: {exc or 'no answer in time'}")
        return 503, body
    if result.error is not None or not isinstance(result.value, HealthGateReport):
        message = result.error.message if result.error else "no state"
        body.update(healthy=False, error=message)
        return 503, body
    report = result.value
    healthy = report.exists and all(v.healthy for v in report.services)
    body.update(
        healthy=healthy,
        running=report.exists,
        services=[msgspec.to_builtins(v) for v in report.services],
    )
    return (200 if healthy else 503), body


async def deploy(request: web.Request) -> web.Response:
    core = parts(request)
    name = request.match_info["name"]
    if core.reconciler is None:
        return error_response(409, "deploys_off", "the core has no private_key: it deploys nothing")
    exclusive = request.query.get("exclusive", "").lower() in ("1", "true", "yes")
    try:
        admission = await core.reconciler.submit(
            Intent([name], "api", f"deploy {name}"), exclusive=exclusive
        )
    except Busy as exc:
        return error_response(409, "deploy_busy", str(exc))
    except Refused as exc:
        code = 404 if "no stack named" in str(exc) else 409
        return error_response(
            code, "stack_not_found" if code == 404 else "deploy_refused", str(exc)
        )
    run_id = admission.runs[name]
    run = await anyio.to_thread.run_sync(core.records.run, run_id)
    body = dict(run or {"id": run_id})
    body.update(intent=admission.intent, joined=run_id not in admission.created)
    return json_response(body, 202)


async def history(request: web.Request) -> web.Response:
    core = parts(request)
    name = request.match_info["name"]
    limit = query_int(request, "limit", 20, minimum=1)
    deploys = await anyio.to_thread.run_sync(core.records.history, name, min(limit, 500))
    return json_response({"stack": name, "deploys": deploys})


async def reconcile_view(request: web.Request) -> web.Response:
    core = parts(request)
    verdicts = await anyio.to_thread.run_sync(_verdicts, core)
    return json_response(
        {
            "policy": core.config.reconcile,
            "summary": summarize(verdicts),
            "stacks": {n: msgspec.to_builtins(v) for n, v in sorted(verdicts.items())},
        }
    )


async def reconcile_now(request: web.Request) -> web.Response:
    core = parts(request)
    if core.reconciler is None:
        return error_response(409, "deploys_off", "the core has no private_key")
    admission = await core.reconciler.reconcile_once(core.desired, "api")
    if admission is None:
        return json_response({"intent": None, "runs": {}})
    return json_response({"intent": admission.intent, "runs": admission.runs}, 202)


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/stacks", list_stacks)
    router.add_get("/api/stacks/{name}", stack_status)
    router.add_post("/api/stacks/{name}/deploy", deploy)
    router.add_get("/api/stacks/{name}/deploys", history)
    router.add_get("/api/reconcile", reconcile_view)
    router.add_post("/api/reconcile", reconcile_now)
    router.add_get("/status/{name}", public_status)
