"""The Swarm health rule for one service, from the Engine API's service and task objects.

No I/O. A task with a healthcheck only reaches ``running`` once healthy (until then Swarm reports
it ``starting``), and a task that turns unhealthy is killed and ends ``failed``, so counting
running tasks is counting healthy ones, on any node.

- replicated: ``Replicas`` tasks running (0 is ready at once);
- global: every task Swarm scheduled is running (no eligible node: ready, 0/0);
- replicated-job: ``TotalCompletions`` tasks of the current job iteration complete;
- global-job: every task of the current iteration complete;
- any mode: an update ``paused`` or rolled back since the deploy started fails the service;
  ``max_failures`` failed or rejected tasks of the current spec is a crash loop; a task that
  cannot be scheduled for ``stall_grace`` seconds fails with the scheduler's reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from periphery.ops.verdict import Rules, State, Verdict, parse_time, seconds_between

Obj = Mapping[str, Any]

_FAILED = {"failed", "rejected", "orphaned"}
_BAD_UPDATE = {
    "paused": "update paused",
    "rollback_started": "update failed and is being rolled back",
    "rollback_paused": "update rollback paused",
    "rollback_completed": "update rolled back",
}
# How long a global service may have no task at all before it counts as 0/0 ready.
_GLOBAL_SETTLE = 2.0


def _status(task: Obj) -> Obj:
    status: Obj = task.get("Status") or {}
    return status


def _state(task: Obj) -> str:
    return str(_status(task).get("State", ""))


def _slot(task: Obj, service_name: str) -> str:
    if task.get("Slot"):
        return f"{service_name}.{task['Slot']}"
    return f"{service_name}.{str(task.get('NodeID', ''))[:12] or str(task.get('ID', ''))[:12]}"


def describe_task(task: Obj, service_name: str) -> str:
    """``web.1 failed: task: non-zero exit (3) (exit code 3)`` and the like."""
    status = _status(task)
    parts = [f"{_slot(task, service_name)} {_state(task) or 'unknown'}"]
    err = status.get("Err") or ""
    message = status.get("Message") or ""
    if err:
        parts.append(f": {err}")
    elif message and message not in {"started", "finished", "pending task scheduling"}:
        parts.append(f": {message}")
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    if code and f"({code})" not in err:
        parts.append(f" (exit code {code})")
    return "".join(parts)


def _failed_tasks(count: int) -> str:
    return "1 task failed" if count == 1 else f"{count} tasks failed (crash loop)"


def _has_healthcheck(service: Obj) -> bool:
    spec = (service.get("Spec") or {}).get("TaskTemplate", {}).get("ContainerSpec", {})
    test = (spec.get("Healthcheck") or {}).get("Test") or []
    return bool(test) and test[0] != "NONE"


def _iteration(obj: Obj) -> object:
    return (obj.get("JobIteration") or {}).get("Index")


def evaluate_service(
    service: Obj,
    tasks: Sequence[Obj],
    *,
    since: datetime,
    at: datetime,
    rules: Rules,
) -> Verdict:
    """The verdict for ``service`` given its ``tasks`` (all of them, any state)."""
    spec: Obj = service.get("Spec") or {}
    name = str(spec.get("Name", service.get("ID", "?")))
    sid = str(service.get("ID", ""))
    mode: Obj = spec.get("Mode") or {}
    logs = (sid,) if sid else ()

    update: Obj = service.get("UpdateStatus") or {}
    ustate = str(update.get("State") or "")
    ustarted = parse_time(update.get("StartedAt"))
    recent_update = ustarted is None or ustarted >= since - timedelta(seconds=1)
    if ustate in _BAD_UPDATE and recent_update:
        message = update.get("Message") or ""
        return Verdict(name, State.FAILED, f"{_BAD_UPDATE[ustate]}: {message}".rstrip(": "), logs)
    updating = ustate == "updating" and recent_update

    if "ReplicatedJob" in mode or "GlobalJob" in mode:
        current = _iteration(service.get("JobStatus") or {})
        tasks = [t for t in tasks if _iteration(t) == current]

    # Failures count from the last change of the service's spec (which this deploy made, or
    # left as it was), or from ``since`` when that is earlier: a task of this spec that failed
    # before the gate began still counts.
    updated = parse_time(service.get("UpdatedAt")) or since
    window = min(since, updated)
    recent = [t for t in tasks if (parse_time(t.get("CreatedAt")) or at) >= window]
    failures = sorted(
        (t for t in recent if _state(t) in _FAILED),
        key=lambda t: str(_status(t).get("Timestamp", "")),
    )
    if len(failures) >= rules.max_failures:
        return Verdict(
            name,
            State.FAILED,
            f"{_failed_tasks(len(failures))} since the deploy; last: "
            + describe_task(failures[-1], name),
            logs,
        )

    healthcheck = _has_healthcheck(service)

    def settled(task: Obj) -> bool:
        if _state(task) != "running" or task.get("DesiredState") != "running":
            return False
        uptime = seconds_between(parse_time(_status(task).get("Timestamp")), at)
        return healthcheck or uptime >= rules.min_running

    active = [t for t in tasks if t.get("DesiredState") in ("running", "complete")]
    if "Replicated" in mode:
        want = int((mode["Replicated"] or {}).get("Replicas", 1))
        have = sum(1 for t in active if settled(t))
    elif "Global" in mode:
        want = sum(1 for t in tasks if t.get("DesiredState") == "running")
        have = sum(1 for t in active if settled(t))
        if want == 0 and seconds_between(since, at) < _GLOBAL_SETTLE:
            want = 1
    elif "ReplicatedJob" in mode:
        job: Obj = mode["ReplicatedJob"] or {}
        want = int(job.get("TotalCompletions") or job.get("MaxConcurrent") or 1)
        have = sum(1 for t in tasks if _state(t) == "complete")
    elif "GlobalJob" in mode:
        want = max(1, len(active))
        have = sum(1 for t in tasks if _state(t) == "complete")
    else:
        return Verdict(name, State.FAILED, f"unknown service mode {sorted(mode)}", logs)

    is_job = "ReplicatedJob" in mode or "GlobalJob" in mode
    progress = f"{have}/{want} {'complete' if is_job else 'running'}"
    if have >= want and not updating:
        return Verdict(name, State.READY, progress, logs)

    reasons = []
    if updating:
        reasons.append("update in progress")
    for task in active:
        state = _state(task)
        err = _status(task).get("Err")
        if state in ("pending", "assigned") and err:
            stuck = seconds_between(parse_time(task.get("CreatedAt")), at)
            if stuck >= rules.stall_grace:
                return Verdict(name, State.FAILED, f"{progress}; cannot be scheduled: {err}", logs)
            reasons.append(f"{state}: {err}")
        elif state == "starting" and healthcheck:
            reasons.append("starting (healthcheck not passing yet)")
        elif state in ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting"):
            reasons.append(state)
    if failures:
        reasons.append("last failure: " + describe_task(failures[-1], name))
    detail = progress + ("; " + "; ".join(dict.fromkeys(reasons)) if reasons else "")
    return Verdict(name, State.WAITING, detail, logs)
