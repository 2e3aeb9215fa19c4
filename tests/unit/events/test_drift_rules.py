"""Drift rules: which engine events are drift, the flap limit, stacks by Docker name."""

from __future__ import annotations

from types import SimpleNamespace

from core.drift import FlapLimiter, Managed, StackInfo, managed_from, triage


def test_a_service_removed_or_scaled_by_hand_is_drift_at_once() -> None:
    removed = triage("service", "remove", "web_app", "", {})
    assert removed is not None and removed.at_once and removed.reason == "removed"
    scaled = triage("service", "update", "web_app", "", {"replicas.old": "1", "replicas.new": "3"})
    assert scaled is not None and scaled.at_once and "1 → 3" in scaled.detail
    manual = triage("service", "update", "web_app", "", {})
    assert manual is not None and manual.reason == "changed"


def test_an_update_in_progress_is_not_drift_but_a_rollback_is_checked() -> None:
    assert triage("service", "update", "web_app", "", {"updatestate.new": "updating"}) is None
    rollback = triage("service", "update", "web_app", "", {"updatestate.new": "rollback_started"})
    assert rollback is not None and not rollback.at_once and rollback.reason == "unhealthy"


def test_a_dead_or_unhealthy_container_is_checked_after_the_grace_period() -> None:
    dead = triage("container", "die", "web-app-1", "app", {"exitCode": "137"})
    assert dead is not None and not dead.at_once and dead.reason == "dead"
    assert "exit code 137" in dead.detail and dead.service == "app"
    sick = triage("container", "health_status", "web-app-1", "app", {"health": "unhealthy"})
    assert sick is not None and sick.reason == "unhealthy"
    well = triage("container", "health_status", "web-app-1", "app", {"health": "healthy"})
    assert well is not None and well.reason == "recovered"
    assert triage("container", "exec_start", "x", "", {}) is None
    assert triage("node", "update", "n1", "", {}) is None


def test_the_flap_limit_allows_n_per_window() -> None:
    limiter = FlapLimiter(limit=2, window=60)
    assert limiter.allow("web", 0)
    assert limiter.allow("web", 10)
    assert not limiter.allow("web", 20)  # a crash loop stops being redeployed
    assert limiter.allow("db", 20)  # per stack
    assert limiter.allow("web", 61)  # the window moved on


def test_events_map_to_stacks_by_project_label_or_service_name_prefix() -> None:
    managed = Managed(
        [
            StackInfo("media", "media", True, ("m",)),
            StackInfo("media-core", "media_core", True, ("m",)),
            StackInfo("dns", "dnsproj", False, ("pi",)),
        ]
    )
    assert managed.stack_of("container", "x", "dnsproj").name == "dns"  # type: ignore[union-attr]
    assert managed.stack_of("service", "media_core_api", "").name == "media-core"  # type: ignore[union-attr]
    assert managed.stack_of("service", "media_web", "").name == "media"  # type: ignore[union-attr]
    assert managed.stack_of("service", "other_web", "") is None
    assert managed.stack_of("container", "x", "") is None


def test_only_deployed_stacks_are_watched_and_on_drift_defaults_to_alert() -> None:
    def res(config: dict[str, object], **top: object) -> SimpleNamespace:
        return SimpleNamespace(config={"config": config, **top})

    stored = {
        ("stack", "a"): res({"server": "s1"}, on_drift="redeploy"),
        ("stack", "b"): res({"swarm": "sw", "project_name": "bee"}),
        ("stack", "never"): res({"server": "s1"}),
        ("swarm", "sw"): res({"servers": ["m1", "m2"]}),
    }
    managed = managed_from(stored, {"a", "b"})
    assert set(managed.by_name) == {"a", "b"}
    assert managed.by_name["a"].on_drift == "redeploy"
    assert managed.by_name["b"].on_drift == "alert"
    assert managed.by_name["b"].servers == ("m1", "m2") and managed.by_docker["bee"].swarm
