"""Health gates: wait until a stack is healthy, or fail saying which service and why.

Both gates poll the Engine API (aiodocker), every :data:`POLL` seconds at first, then less often
(up to :data:`POLL_MAX`: a quick stack is seen healthy at once, and a hundred slow ones do not
load the engine with hundreds of requests a second), until every service but
``ignore_services`` is ready (see :mod:`health_swarm` and :mod:`health_compose` for the rules),
one is failed for good, or ``time_limit`` passes. A failure raises :class:`HealthGateFailed` whose
message names each failing service with its reason and ends with its last log lines. Progress is
reported through ``emit`` whenever a service changes state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

import aiodocker
import aiohttp
import anyio

from periphery.exceptions import HealthGateFailed
from periphery.ops import health_compose, health_swarm
from periphery.ops.swarm_look import Obj, SwarmLook
from periphery.ops.verdict import Rules, State, Verdict, ignored, now, summary
from periphery.process import Emit, discard, note

log = logging.getLogger(__name__)

POLL = 0.25
POLL_MAX = 1.0  # a gate that waits long polls less often: many gates at once load the engine
POLL_GROWTH = 1.15
DEFAULT_TIMEOUT = 300.0
DEFAULT_RULES = Rules()
LOG_LINES = 10
LOG_TIMEOUT = 5.0
API_TIMEOUT = 10.0
STACK_LABEL = "com.docker.stack.namespace"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"

# None: nothing of the stack exists (yet); []: everything there is ignored.
Check = Callable[[aiodocker.Docker, datetime], Awaitable[list[Verdict] | None]]
LogFetch = Callable[[aiodocker.Docker, str], Awaitable[list[str]]]


@asynccontextmanager
async def _client(docker: aiodocker.Docker | None) -> AsyncIterator[aiodocker.Docker]:
    if docker is not None:
        yield docker
        return
    async with aiodocker.Docker() as own:
        yield own


def _lines(chunks: Iterable[str]) -> list[str]:
    text = "".join(chunks)
    return [line for line in text.splitlines() if line.strip()][-LOG_LINES:]


async def _service_logs(docker: aiodocker.Docker, service_id: str) -> list[str]:
    chunks = await cast(
        Awaitable[list[str]],
        docker.services.logs(service_id, stdout=True, stderr=True, tail=str(LOG_LINES)),
    )
    return _lines(chunks)


async def _container_logs(docker: aiodocker.Docker, container_id: str) -> list[str]:
    container = docker.containers.container(container_id)
    chunks = await container.log(stdout=True, stderr=True, tail=LOG_LINES)
    return _lines(chunks)


async def _failure_message(
    docker: aiodocker.Docker, head: str, verdicts: Sequence[Verdict], fetch: LogFetch
) -> str:
    parts = [head]
    parts.extend(f"  {v.line()}" for v in verdicts)
    for verdict in verdicts:
        for source in verdict.log_sources[:3]:
            try:
                with anyio.fail_after(LOG_TIMEOUT):
                    lines = await fetch(docker, source)
            except Exception as exc:  # logs are a courtesy: never hide the real failure
                log.debug("no logs for %s: %s", source, exc)
                continue
            if lines:
                parts.append(f"last log lines of {verdict.service}:")
                parts.extend(f"  | {line}" for line in lines)
    return "\n".join(parts)


async def _gate(
    what: str,
    check: Check,
    fetch: LogFetch,
    *,
    time_limit: float,
    emit: Emit,
    poll: float,
    docker: aiodocker.Docker | None,
    poll_max: float = POLL_MAX,
) -> list[Verdict]:
    started = now()
    verdicts: list[Verdict] | None = None
    failed: list[Verdict] = []
    last_error = ""
    shown: dict[str, str] = {}
    async with _client(docker) as client:
        with anyio.move_on_after(time_limit):
            while True:
                try:
                    with anyio.fail_after(API_TIMEOUT):
                        verdicts = await check(client, started)
                    last_error = ""
                except (aiodocker.DockerError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    last_error = f"Docker API error: {exc or type(exc).__name__}"
                    log.info("%s: %s", what, last_error)
                for verdict in verdicts or []:
                    if shown.get(verdict.service) != verdict.detail:
                        shown[verdict.service] = verdict.detail
                        await note(emit, f"health: {verdict.line()}")
                failed = [v for v in verdicts or [] if v.state is State.FAILED]
                if failed:
                    break
                if verdicts is not None and all(v.state is State.READY for v in verdicts):
                    elapsed = (now() - started).total_seconds()
                    await note(emit, f"healthy after {elapsed:.1f}s: {summary(verdicts)}")
                    return verdicts
                await anyio.sleep(poll)
                poll = min(poll * POLL_GROWTH, max(poll, poll_max))
        if failed:
            head = f"{what} is not healthy:"
        else:
            failed = [v for v in verdicts or [] if v.state is not State.READY]
            head = f"{what} not healthy after {time_limit:g}s:"
            if verdicts is None:
                head += " nothing of it exists"
        if last_error:
            head += f" (last {last_error})"
        with anyio.CancelScope(shield=True):
            message = await _failure_message(client, head, failed, fetch)
    raise HealthGateFailed(message)


def _labels(service: Obj) -> Mapping[str, str]:
    return (service.get("Spec") or {}).get("Labels") or {}


def swarm_check(
    name: str,
    ignore_services: Sequence[str],
    since: datetime | None,
    rules: Rules,
    look: SwarmLook | None = None,
) -> Check:
    """One look at stack ``name``: a verdict per service, or None when nothing of it exists.
    With ``look``, the services and tasks come from the look shared by the gates waiting now,
    never from one that began before this check's first call."""
    first: list[float] = []

    async def fetch(client: aiodocker.Docker) -> tuple[Sequence[Obj], Sequence[Obj]]:
        if look is not None:
            if not first:
                first.append(anyio.current_time())
            every, all_tasks = await look.get(client, first[0])
            mine = [s for s in every if _labels(s).get(STACK_LABEL) == name]
            ids = {s["ID"] for s in mine}
            return mine, [t for t in all_tasks if t.get("ServiceID") in ids]
        services = await client.services.list(filters={"label": f"{STACK_LABEL}={name}"})
        if not services:
            return [], []
        tasks = await client.tasks.list(filters={"service": [s["ID"] for s in services]})
        return services, tasks

    async def check(client: aiodocker.Docker, started: datetime) -> list[Verdict] | None:
        found, tasks = await fetch(client)
        if not found:
            return None
        services = [s for s in found if not ignored(s["Spec"]["Name"], name, ignore_services)]
        if not services:
            return []
        at = now()
        return [
            health_swarm.evaluate_service(
                s,
                [t for t in tasks if t.get("ServiceID") == s["ID"]],
                since=since or started,
                at=at,
                rules=rules,
            )
            for s in sorted(services, key=lambda s: s["Spec"]["Name"])
        ]

    return check


def compose_check(project: str, ignore_services: Sequence[str], rules: Rules) -> Check:
    """One look at compose project ``project``: a verdict per service, or None when empty."""

    async def check(client: aiodocker.Docker, started: datetime) -> list[Verdict] | None:
        filters = json.dumps({"label": [f"{PROJECT_LABEL}={project}"]})
        listed = await client.containers.list(all=True, filters=filters)
        if not listed:
            return None
        by_service: dict[str, list[dict[str, Any]]] = {}
        for container in listed:
            try:
                info: dict[str, Any] = await container.show()
            except aiodocker.DockerError as exc:
                if exc.status == 404:  # removed between list and inspect
                    continue
                raise
            labels = (info.get("Config") or {}).get("Labels") or {}
            if labels.get(ONEOFF_LABEL) == "True":
                continue
            service = str(labels.get(SERVICE_LABEL, info.get("Name", "?")))
            if service in ignore_services:
                continue
            by_service.setdefault(service, []).append(info)
        at = now()
        return [
            health_compose.evaluate_service(s, by_service[s], at=at, rules=rules)
            for s in sorted(by_service)
        ]

    return check


async def snapshot(check: Check, *, docker: aiodocker.Docker | None = None) -> list[Verdict] | None:
    """The verdicts of one look, now (no waiting): the state query behind ``StackState``."""
    async with _client(docker) as client:
        with anyio.fail_after(API_TIMEOUT):
            return await check(client, now())


async def wait_swarm_healthy(
    name: str,
    *,
    ignore_services: Sequence[str] = (),
    time_limit: float = DEFAULT_TIMEOUT,
    since: datetime | None = None,
    rules: Rules = DEFAULT_RULES,
    emit: Emit = discard,
    poll: float = POLL,
    docker: aiodocker.Docker | None = None,
    look: SwarmLook | None = None,
) -> list[Verdict]:
    """Wait until every service of stack ``name`` (but ``ignore_services``, short or full names)
    is ready. ``since``: when the deploy started (failures before it do not count; default: now).
    With ``look`` (shared by the gates waiting at once) it polls at ``poll`` throughout: the
    engine answers one look per poll for all of them.
    """
    check = swarm_check(name, ignore_services, since, rules, look)

    return await _gate(
        f"stack {name!r}",
        check,
        _service_logs,
        time_limit=time_limit,
        emit=emit,
        poll=poll,
        docker=docker,
        poll_max=poll if look is not None else POLL_MAX,
    )


async def wait_compose_healthy(
    project: str,
    *,
    ignore_services: Sequence[str] = (),
    time_limit: float = DEFAULT_TIMEOUT,
    rules: Rules = DEFAULT_RULES,
    emit: Emit = discard,
    poll: float = POLL,
    docker: aiodocker.Docker | None = None,
) -> list[Verdict]:
    """Wait until every container of compose project ``project`` (but those of
    ``ignore_services``) is running, and healthy where it has a healthcheck."""
    check = compose_check(project, ignore_services, rules)

    return await _gate(
        f"compose project {project!r}",
        check,
        _container_logs,
        time_limit=time_limit,
        emit=emit,
        poll=poll,
        docker=docker,
    )
