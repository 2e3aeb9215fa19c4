"""Procedures: what is applied, their schedules, their runs.

- ``GET /api/procedures``: every applied procedure with its stages, the run in progress, the
  last run, and its schedule (the cron it runs on, its time zone, the next three times, or why
  it is not armed);
- ``POST /api/procedures/{name}/run``: run it (source ``api``): 202 with the run's id; 409 while
  it runs already (one run of a procedure at a time), 404 when no such procedure is applied;
- ``GET /api/procedures/{name}/runs``: its recent runs;
- ``GET /api/procedure-runs/{id}[?after=SEQ]``: a run, its steps and its output lines after
  ``SEQ`` (``stackward run --follow`` polls this).
"""

from __future__ import annotations

import anyio.to_thread
import msgspec
from aiohttp import web

from core.api.http import error_response, json_response, path_id, printable, query_int
from core.api.state import parts
from core.automation.records import ProcedureRecords
from core.automation.runner import ProcedureBusy, ProcedureRefused


def _records(request: web.Request) -> ProcedureRecords:
    core = parts(request)
    return ProcedureRecords(core.store)


async def list_procedures(request: web.Request) -> web.Response:
    core = parts(request)
    if core.procedures is None:
        return json_response({"procedures": []})
    configs = await core.procedures.procedures()
    last = await anyio.to_thread.run_sync(_records(request).last_runs)
    running = core.procedures.running()
    out = []
    for name, cfg in sorted(configs.items()):
        schedule: dict[str, object] = {
            "expression": cfg.schedule,
            "format": cfg.schedule_format or "English",
            "timezone": cfg.schedule_timezone,
            "enabled": cfg.schedule_enabled,
        }
        if cfg.schedule.strip() and cfg.schedule_enabled and core.scheduler is not None:
            schedule.update(core.scheduler.status(name))
        row = last.get(name)
        out.append(
            {
                "name": name,
                "stages": [
                    {
                        "name": s.name,
                        "enabled": s.enabled,
                        "executions": [
                            {"type": e.execution.type, "target": e.execution.target()}
                            for e in s.executions
                            if e.enabled
                        ],
                    }
                    for s in cfg.stages
                ],
                "running": running.get(name),
                "last_run": msgspec.structs.asdict(row) if row is not None else None,
                "schedule": schedule,
                "webhook_enabled": cfg.webhook_enabled,
            }
        )
    return json_response({"procedures": out})


async def run_procedure(request: web.Request) -> web.Response:
    core = parts(request)
    name = request.match_info["name"]
    if core.procedures is None:
        return error_response(503, "unavailable", "procedures are not running in this core")
    try:
        run_id = await core.procedures.start(name, "api", "api")
    except ProcedureBusy as exc:
        return error_response(409, "procedure_running", str(exc))
    except ProcedureRefused as exc:
        status = 404 if "no procedure named" in str(exc) else 503
        code = "procedure_not_found" if status == 404 else "unavailable"
        return error_response(status, code, str(exc))
    return json_response({"run": run_id, "procedure": name}, 202)


async def procedure_runs(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    limit = query_int(request, "limit", 20, minimum=1)
    rows = await anyio.to_thread.run_sync(_records(request).runs, name, min(limit, 500))
    return json_response(
        {"procedure": printable(name, 200), "runs": [msgspec.structs.asdict(r) for r in rows]}
    )


async def get_procedure_run(request: web.Request) -> web.Response:
    run_id = path_id(request)
    after = query_int(request, "after", -1)
    run = await anyio.to_thread.run_sync(_records(request).run, run_id, after)
    if run is None:
        return error_response(404, "run_not_found", f"no procedure run {run_id}")
    return json_response(run)


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/procedures", list_procedures)
    router.add_post("/api/procedures/{name}/run", run_procedure)
    router.add_get("/api/procedures/{name}/runs", procedure_runs)
    router.add_get("/api/procedure-runs/{id}", get_procedure_run)
