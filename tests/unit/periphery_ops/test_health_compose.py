from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from periphery.ops.health_compose import evaluate_service
from periphery.ops.verdict import Rules, State

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
RULES = Rules(max_failures=3, min_running=1.0)


def container(
    status: str = "running",
    *,
    health: str | None = None,
    started: float = 0,
    exit_code: int = 0,
    restarts: int = 0,
    name: str = "p-web-1",
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Status": status,
        "ExitCode": exit_code,
        "StartedAt": (T0 + timedelta(seconds=started)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if health:
        state["Health"] = {
            "Status": health,
            "Log": [{"ExitCode": 1, "Output": "wget: connection refused\n"}],
        }
    return {"Id": name + "-id", "Name": "/" + name, "State": state, "RestartCount": restarts}


def judge(*containers: dict[str, Any], at: float = 10) -> tuple[State, str]:
    verdict = evaluate_service("web", list(containers), at=T0 + timedelta(seconds=at), rules=RULES)
    return verdict.state, verdict.detail


def test_running_without_healthcheck() -> None:
    assert judge(container()) == (State.READY, "1/1 ready")
    assert judge(container(started=9.5))[0] is State.WAITING


def test_health_states() -> None:
    assert judge(container(health="healthy", started=9.9))[0] is State.READY
    state, detail = judge(container(health="starting"))
    assert state is State.WAITING
    # stuck in "starting": the probe's last output says why (a health timeout then quotes it)
    assert "connection refused" in detail
    state, detail = judge(container(health="unhealthy"))
    assert state is State.FAILED and "unhealthy" in detail and "connection refused" in detail


def test_exited_and_crash_loop() -> None:
    state, detail = judge(container("exited", exit_code=2))
    assert state is State.FAILED and "exit code 2" in detail and "p-web-1" in detail
    assert judge(container("restarting", restarts=1))[0] is State.WAITING
    state, detail = judge(container("restarting", restarts=3, exit_code=1))
    assert state is State.FAILED and "crash loop" in detail


def test_all_replicas_must_be_ready() -> None:
    state, detail = judge(container(name="p-web-1"), container(health="starting", name="p-web-2"))
    assert state is State.WAITING and detail.startswith("1/2 ready")


def test_no_container_waits() -> None:
    assert judge()[0] is State.WAITING
