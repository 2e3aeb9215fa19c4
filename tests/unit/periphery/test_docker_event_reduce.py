"""Engine events reduced to what the core uses (pure)."""

from __future__ import annotations

from periphery.handlers.docker_events import reduce

TYPES = frozenset({"container", "service", "node"})


def test_a_compose_container_dying_keeps_its_project_service_and_exit_code() -> None:
    raw = {
        "Type": "container",
        "Action": "die",
        "Actor": {
            "ID": "abc",
            "Attributes": {
                "name": "web-app-1",
                "com.docker.compose.project": "web",
                "com.docker.compose.service": "app",
                "exitCode": "137",
                "SECRET_LABEL": "hunter2",
            },
        },
        "time": 1700000000,
        "timeNano": 1700000000123456789,
    }
    e = reduce(raw, TYPES)
    assert e is not None
    assert (e.type, e.action, e.actor, e.name) == ("container", "die", "abc", "web-app-1")
    assert (e.project, e.service, e.time_nano) == ("web", "app", 1700000000123456789)
    assert e.detail == {"exitCode": "137"}  # other labels stay on the host


def test_health_status_is_split_into_action_and_health() -> None:
    raw = {
        "Type": "container",
        "Action": "health_status: unhealthy",
        "Actor": {"ID": "x", "Attributes": {"com.docker.stack.namespace": "media"}},
        "time": 5,
    }
    e = reduce(raw, TYPES)
    assert e is not None and e.action == "health_status" and e.detail["health"] == "unhealthy"
    assert e.project == "media" and e.time_nano == 5_000_000_000


def test_a_service_scale_carries_the_replicas() -> None:
    raw = {
        "Type": "service",
        "Action": "update",
        "Actor": {
            "ID": "s",
            "Attributes": {"name": "web_app", "replicas.new": "3", "replicas.old": "1"},
        },
    }
    e = reduce(raw, TYPES)
    assert e is not None and e.detail == {"replicas.new": "3", "replicas.old": "1"}


def test_uninteresting_events_and_types_are_dropped() -> None:
    assert reduce({"Type": "container", "Action": "exec_start: sh", "Actor": {}}, TYPES) is None
    assert reduce({"Type": "network", "Action": "connect", "Actor": {}}, TYPES) is None
    raw = {"Type": "service", "Action": "remove", "Actor": {"ID": "s"}}
    assert reduce(raw, frozenset({"container"})) is None
