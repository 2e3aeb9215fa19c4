"""The Compose health rule for one service, from its containers' inspect objects. No I/O.

Every container of the service must be running, and healthy where it has a healthcheck; one
without a healthcheck counts once it has run ``min_running`` seconds. A container that exited,
is dead or paused, reports ``unhealthy``, or restarted ``max_failures`` times fails the service at
once: Compose will not bring it back by itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from periphery.ops.verdict import Rules, State, Verdict, parse_time, seconds_between

Obj = Mapping[str, Any]


def _name(container: Obj) -> str:
    return str(container.get("Name", "")).lstrip("/") or str(container.get("Id", "?"))[:12]


def _last_health_output(health: Obj) -> str:
    log = health.get("Log") or []
    if not log:
        return ""
    last: Obj = log[-1]
    output = str(last.get("Output") or "").strip().replace("\n", " ")
    return f" (last check exit {last.get('ExitCode')}: {output[:200]})" if output else ""


def evaluate_container(container: Obj, *, at: datetime, rules: Rules) -> tuple[State, str]:
    state: Obj = container.get("State") or {}
    status = str(state.get("Status", ""))
    restarts = int(container.get("RestartCount") or 0)
    code = state.get("ExitCode")
    health: Obj = state.get("Health") or {}
    hstatus = str(health.get("Status") or "")
    error = state.get("Error") or ""
    suffix = f": {error}" if error else ""
    if status in ("exited", "dead"):
        oom = " (OOM killed)" if state.get("OOMKilled") else ""
        return State.FAILED, f"{status} with exit code {code}{oom}{suffix}"
    if status == "paused":
        return State.FAILED, "paused"
    if restarts >= rules.max_failures and status == "restarting":
        return State.FAILED, f"crash loop: restarted {restarts} times, last exit code {code}"
    if status != "running":
        return State.WAITING, status or "unknown state"
    if hstatus == "unhealthy":
        return State.FAILED, "unhealthy" + _last_health_output(health)
    if hstatus == "starting":
        # the probe's last output, so a gate that times out here says why it never passed
        return State.WAITING, "starting (healthcheck not passing yet)" + _last_health_output(
            health
        )
    if hstatus == "healthy":
        return State.READY, "healthy"
    uptime = seconds_between(parse_time(state.get("StartedAt")), at)
    if uptime < rules.min_running:
        return State.WAITING, "running (not yet for long enough to count)"
    return State.READY, "running"


def evaluate_service(
    service: str, containers: Sequence[Obj], *, at: datetime, rules: Rules
) -> Verdict:
    """The verdict for ``service`` (its compose name) given all its containers."""
    ids = tuple(str(c.get("Id", "")) for c in containers)
    if not containers:
        return Verdict(service, State.WAITING, "no container", ids)
    results = [(c, *evaluate_container(c, at=at, rules=rules)) for c in containers]
    ready = sum(1 for _, state, _ in results if state is State.READY)
    progress = f"{ready}/{len(containers)} ready"
    for container, state, detail in results:
        if state is State.FAILED:
            return Verdict(service, State.FAILED, f"{_name(container)} {detail}", ids)
    if ready == len(containers):
        return Verdict(service, State.READY, progress, ids)
    waiting = "; ".join(
        f"{_name(c)} {detail}" for c, state, detail in results if state is State.WAITING
    )
    return Verdict(service, State.WAITING, f"{progress}; {waiting}", ids)
