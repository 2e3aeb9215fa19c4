from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from periphery.ops.health_swarm import evaluate_service
from periphery.ops.verdict import Rules, State

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
RULES = Rules(max_failures=3, min_running=1.0, stall_grace=5.0)


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def service(
    mode: dict[str, Any] | None = None,
    healthcheck: bool = False,
    update: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {"Image": "img"}
    if healthcheck:
        container["Healthcheck"] = {"Test": ["CMD", "true"]}
    svc: dict[str, Any] = {
        "ID": "svc1",
        "Spec": {
            "Name": "st_web",
            "Mode": mode or {"Replicated": {"Replicas": 1}},
            "TaskTemplate": {"ContainerSpec": container},
        },
    }
    if update:
        svc["UpdateStatus"] = update
    svc.update(extra)
    return svc


def task(
    state: str,
    *,
    desired: str = "running",
    created: float = 1,
    changed: float = 1,
    err: str = "",
    exit_code: int = 0,
    slot: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Timestamp": ts(changed), "Message": state}
    if err:
        status["Err"] = err
    status["ContainerStatus"] = {"ExitCode": exit_code}
    return {
        "ID": f"t{slot}{state}",
        "Slot": slot,
        "DesiredState": desired,
        "CreatedAt": ts(created),
        "Status": status,
        **extra,
    }


def judge(svc: dict[str, Any], tasks: list[dict[str, Any]], at: float = 10) -> tuple[State, str]:
    verdict = evaluate_service(svc, tasks, since=T0, at=T0 + timedelta(seconds=at), rules=RULES)
    assert verdict.service == "st_web"
    return verdict.state, verdict.detail


def test_replicated_running_long_enough_is_ready() -> None:
    assert judge(service(), [task("running", changed=5)]) == (State.READY, "1/1 running")


def test_replicated_without_healthcheck_waits_min_running() -> None:
    state, detail = judge(service(), [task("running", changed=9.5)])
    assert state is State.WAITING and detail.startswith("0/1 running")


def test_healthchecked_task_counts_once_running() -> None:
    assert judge(service(healthcheck=True), [task("running", changed=9.9)])[0] is State.READY
    state, detail = judge(service(healthcheck=True), [task("starting")])
    assert state is State.WAITING and "healthcheck" in detail


def test_zero_replicas_ready() -> None:
    assert judge(service({"Replicated": {"Replicas": 0}}), [])[0] is State.READY


def test_crash_loop_fails_with_exit_code() -> None:
    tasks = [
        task(
            "failed",
            desired="shutdown",
            created=i,
            changed=i,
            err="task: non-zero exit (3)",
            exit_code=3,
        )
        for i in (1, 2, 3)
    ]
    state, detail = judge(service(), tasks)
    assert state is State.FAILED
    assert "crash loop" in detail and "non-zero exit (3)" in detail


def test_failures_before_the_deploy_do_not_count() -> None:
    tasks = [task("failed", desired="shutdown", created=-i, err="old") for i in (1, 2, 3)]
    tasks.append(task("running", changed=2))
    assert judge(service(), tasks)[0] is State.READY


def test_unschedulable_fails_after_grace_with_reason() -> None:
    err = "no suitable node (scheduling constraints not satisfied on 1 node)"
    pending = task("pending", created=1, err=err)
    state, detail = judge(service(), [pending], at=3)
    assert state is State.WAITING and "no suitable node" in detail
    state, detail = judge(service(), [pending], at=7)
    assert state is State.FAILED and "no suitable node" in detail


def test_rejected_image_is_reported() -> None:
    tasks = [
        task("rejected", desired="shutdown", err="No such image: nope:1", created=1),
        task("preparing", slot=1, created=2),
    ]
    state, detail = judge(service(), tasks)
    assert state is State.WAITING and "No such image: nope:1" in detail


def test_update_rolled_back_fails() -> None:
    update = {"State": "rollback_completed", "StartedAt": ts(2), "Message": "rollback completed"}
    state, detail = judge(service(update=update), [task("running", changed=1)])
    assert state is State.FAILED and "rolled back" in detail


def test_update_from_before_the_deploy_is_ignored() -> None:
    update = {"State": "rollback_completed", "StartedAt": ts(-100)}
    assert judge(service(update=update), [task("running", changed=1)])[0] is State.READY


def test_update_in_progress_waits_and_paused_fails() -> None:
    updating = {"State": "updating", "StartedAt": ts(1)}
    state, detail = judge(service(update=updating), [task("running", changed=1)])
    assert state is State.WAITING and "update in progress" in detail
    paused = {"State": "paused", "StartedAt": ts(1), "Message": "update paused due to failure"}
    assert judge(service(update=paused), [task("running")])[0] is State.FAILED


def test_global_service() -> None:
    svc = service({"Global": {}})
    assert (
        judge(
            svc, [task("running", changed=1, NodeID="n1"), task("running", changed=1, NodeID="n2")]
        )[0]
        is State.READY
    )
    assert judge(svc, [task("running", changed=1), task("starting", slot=2)])[0] is State.WAITING
    assert judge(svc, [], at=1)[0] is State.WAITING
    assert judge(svc, [], at=10) == (State.READY, "0/0 running")


def test_replicated_job_counts_completions_of_current_iteration() -> None:
    svc = service(
        {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 2}},
        JobStatus={"JobIteration": {"Index": 7}},
    )
    cur = {"JobIteration": {"Index": 7}}
    old = {"JobIteration": {"Index": 6}}
    done = [task("complete", desired="complete", slot=i, **cur) for i in (1, 2)]
    assert judge(svc, done) == (State.READY, "2/2 complete")
    partial = [
        task("complete", desired="complete", **cur),
        task("complete", desired="complete", slot=2, **old),
    ]
    assert judge(svc, partial)[0] is State.WAITING


def test_global_job() -> None:
    svc = service({"GlobalJob": {}}, JobStatus={"JobIteration": {"Index": 1}})
    cur = {"JobIteration": {"Index": 1}}
    assert judge(svc, [task("complete", desired="complete", **cur)])[0] is State.READY
    assert judge(svc, [task("running", desired="complete", **cur)])[0] is State.WAITING


def test_failures_of_the_current_spec_count_from_its_update() -> None:
    svc = service(UpdatedAt=ts(-2))
    tasks = [
        task("failed", desired="shutdown", created=-1, err="task: non-zero exit (1)"),
        task("starting", created=0.5),
    ]
    verdict = evaluate_service(
        svc, tasks, since=T0, at=T0 + timedelta(seconds=1), rules=Rules(max_failures=1)
    )
    assert verdict.state is State.FAILED
