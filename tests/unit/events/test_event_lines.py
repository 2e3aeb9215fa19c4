"""What ``stackward events`` prints for each kind (pure)."""

from __future__ import annotations

from core.cli.event_lines import render

PLAIN = dict.fromkeys(("green", "yellow", "red", "bold", "dim", "reset"), "")
COLOR = {"green": "<g>", "yellow": "<y>", "red": "<r>", "bold": "<b>", "dim": "<d>", "reset": "</>"}


def ev(
    kind: str, data: dict[str, object], resource: str = "stack:web", id: int = 7
) -> dict[str, object]:
    return {"id": id, "time": 1_700_000_000.25, "kind": kind, "resource": resource, "data": data}


def test_output_lines_sit_under_their_deploy_one_per_line() -> None:
    lines = render(ev("deploy.output", {"stack": "web", "text": "one\ntwo\n"}), PLAIN)
    assert lines == ["    web │ one", "    web │ two"]


def test_a_failed_deploy_is_red_and_says_why() -> None:
    [line] = render(
        ev("deploy.finished", {"status": "failed", "seconds": 3.25, "message": "unhealthy"}),
        COLOR,
    )
    assert "#7" in line and "deploy.finished" in line and "stack:web" in line
    assert "<r>failed in 3.2s: unhealthy</>" in line


def test_drift_and_health_and_peripheries() -> None:
    [drift] = render(
        ev("drift", {"reason": "dead", "detail": "web exited", "action": "redeploy", "run": 4}),
        PLAIN,
    )
    assert "dead: web exited → redeploy (run 4)" in drift
    [health] = render(ev("health.changed", {"healthy": False, "detail": "web: exited"}), COLOR)
    assert "<r>not healthy (web: exited)</>" in health
    [lost] = render(ev("periphery.lost", {"reason": "heartbeat"}, "server:nas"), PLAIN)
    assert "server:nas" in lost and "lost: heartbeat" in lost


def test_control_messages() -> None:
    [lagged] = render({"control": "lagged", "first": 5, "last": 9, "count": 5}, PLAIN)
    assert "missed 5 event(s) (#5–#9)" in lagged
    assert "live" in render({"control": "live", "last": 3}, PLAIN)[0]
    assert render({"control": "unknown"}, PLAIN) == []


def test_an_unknown_kind_still_prints() -> None:
    [line] = render(ev("future.kind", {"x": 1}), PLAIN)
    assert "future.kind" in line and "{'x': 1}" in line
