"""Runs, deploys, their output, and intents:

- ``GET /api/runs/{id}``: a run and its deploys (each with its steps);
- ``GET /api/deploys/{id}``: one deploy, its steps, and for a failure the step and the last output
  lines; ``GET /api/deploys/{id}/log?after=SEQ``: its output, in order;
- ``GET /api/intents/{id}``: a trigger as recorded, and the run that carries each stack.
"""

from __future__ import annotations

import anyio.to_thread
import msgspec
from aiohttp import web

from core.api.http import error_response, json_response, path_id, query_int
from core.api.state import parts


async def get_run(request: web.Request) -> web.Response:
    run_id = path_id(request)
    run = await anyio.to_thread.run_sync(parts(request).records.run, run_id)
    if run is None:
        return error_response(404, "run_not_found", f"no deploy run {run_id}")
    return json_response(run)


async def get_deploy(request: web.Request) -> web.Response:
    deploy_id = path_id(request)
    deploy = await anyio.to_thread.run_sync(parts(request).records.deploy, deploy_id)
    if deploy is None:
        return error_response(404, "deploy_not_found", f"no deploy {deploy_id}")
    return json_response(deploy)


async def get_log(request: web.Request) -> web.Response:
    deploy_id = path_id(request)
    after = query_int(request, "after", -1)
    lines = await anyio.to_thread.run_sync(parts(request).records.output, deploy_id, after)
    return json_response({"deploy": deploy_id, "lines": lines})


async def get_intent(request: web.Request) -> web.Response:
    intent_id = path_id(request)
    row = await anyio.to_thread.run_sync(parts(request).intents.get, intent_id)
    if row is None:
        return error_response(404, "intent_not_found", f"no intent {intent_id}")
    return json_response(msgspec.to_builtins(row))


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/runs/{id}", get_run)
    router.add_get("/api/deploys/{id}", get_deploy)
    router.add_get("/api/deploys/{id}/log", get_log)
    router.add_get("/api/intents/{id}", get_intent)
