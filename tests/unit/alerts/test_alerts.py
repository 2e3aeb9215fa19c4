"""Alerts without sockets: what each endpoint type is sent (the exact request, as Komodo's
bin/core/src/alert/*.rs sends it), the filters and maintenance windows (Komodo's
send_alert_to_alerter and is_in_maintenance), and what AlertWatch raises for a sequence of
events (the real tests with HTTP receivers are in tests/integration/alerts)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.alerts import model as m
from core.alerts.center import Alerts
from core.alerts.endpoints import DISCORD_MAX, request_for
from core.alerts.routing import Alerter, recipients, wants
from core.alerts.sender import AlertSender
from core.alerts.watch import AlertWatch, ServerFacts, StackFacts
from core.config import CoreConfig
from core.events.bus import EventBus
from core.events.model import Filter
from core.resources.models import AlerterConfig, AlerterEndpoint, MaintenanceWindow, ResourceTarget
from core.resources.windows import active, day_number, problems

TS = 1_800_000_000_000

STATE_CHANGE = m.Alert(
    ts=TS,
    level=m.WARNING,
    target=m.Target("Stack", "web"),
    type=m.STACK_STATE_CHANGE,
    data={
        "id": "web",
        "name": "web",
        "server_id": "nas",
        "server_name": "nas",
        "swarm_id": None,
        "swarm_name": None,
        "from": "running",
        "to": "unhealthy",
    },
    resolved_ts=TS,
)


# ------------------------------------------------------------------------------- requests


def test_ntfy_gets_the_text_with_a_title_and_the_email() -> None:
    """ntfy.rs: POST url, Title header, X-Email when set, the standard text as the body."""
    out = request_for("Ntfy", "https://ntfy.example/alerts", STATE_CHANGE, "ops@example.org")
    assert out is not None and out.url == "https://ntfy.example/alerts"
    assert out.headers == {
        "Title": "stackward alert",
        "Content-Type": "text/plain; charset=utf-8",
        "X-Email": "ops@example.org",
    }
    assert out.body.decode() == "🥞 Stack web is now unhealthy\nserver: nas\nprevious: running"
    assert "ntfy.example" not in repr(out)  # URLs carry tokens


def test_discord_gets_content_bold_like_komodo_and_cut_to_2000() -> None:
    """discord.rs: JSON {"content": ...} with **bold** names and values."""
    out = request_for("Discord", "https://discord.example/api/webhooks/1/T", STATE_CHANGE)
    assert out is not None and out.headers == {"Content-Type": "application/json"}
    assert json.loads(out.body) == {
        "content": "🥞 Stack **web** is now unhealthy\nserver: **nas**\nprevious: **running**"
    }
    long = m.Alert(
        TS,
        m.CRITICAL,
        m.Target("Stack", "web"),
        m.STACK_DEPLOY_FAILED,
        {"name": "web", "reason": "x" * 5000},
    )
    out = request_for("Discord", "https://d", long)
    assert out is not None and len(json.loads(out.body)["content"]) == DISCORD_MAX


def test_slack_gets_text_and_header_and_section_blocks() -> None:
    """slack.rs with slack_client_rs: {"text", "blocks": [header plain_text, section mrkdwn]}."""
    out = request_for("Slack", "https://hooks.slack.example/services/X", STATE_CHANGE)
    assert out is not None and out.headers == {"Content-Type": "application/json"}
    assert json.loads(out.body) == {
        "text": "🥞 Stack *web* is now unhealthy",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": "🥞 Stack web is now unhealthy"},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "server: *nas*\nprevious: *running*"},
            },
        ],
    }


def test_custom_gets_the_alert_as_komodo_serialises_it() -> None:
    """mod.rs send_custom_alert: POST the Alert as JSON (adjacently tagged data)."""
    out = request_for("Custom", "http://hook.example:7000/in", STATE_CHANGE)
    assert out is not None
    assert json.loads(out.body) == {
        "ts": TS,
        "resolved": True,
        "level": "WARNING",
        "target": {"type": "Stack", "id": "web"},
        "data": {
            "type": "StackStateChange",
            "data": {
                "id": "web",
                "name": "web",
                "server_id": "nas",
                "server_name": "nas",
                "swarm_id": None,
                "swarm_name": None,
                "from": "running",
                "to": "unhealthy",
            },
        },
        "resolved_ts": TS,
    }
    assert request_for("Pushover", "https://p", STATE_CHANGE) is None


@pytest.mark.parametrize(
    ("type_", "level", "data", "text"),
    [
        (
            m.STACK_DEPLOY_FAILED,
            m.CRITICAL,
            {"name": "web", "server_name": "nas", "step": "health", "reason": "web: unhealthy"},
            "CRITICAL 🚨 | Stack web failed to deploy ❌\nserver: nas\nstep: health"
            "\nweb: unhealthy",
        ),
        (
            m.SERVER_UNREACHABLE,
            m.CRITICAL,
            {"name": "nas", "err": {"error": "heartbeat lost"}},
            "CRITICAL 🚨 | nas is unreachable ❌\nerror: heartbeat lost",
        ),
        (m.SERVER_UNREACHABLE, m.OK, {"name": "nas", "err": None}, "OK ✅ | nas is now connected"),
        (
            m.STACK_IMAGE_UPDATE_AVAILABLE,
            m.OK,
            {"name": "web", "swarm_name": "lab", "service": "app", "image": "me/app:1"},
            "⬆ Stack web has an update available\nswarm: lab\nservice: app\nimage: me/app:1",
        ),
        (
            m.STACK_AUTO_UPDATED,
            m.OK,
            {"name": "web", "images": ["a:1", "b:2"]},
            "⬆ Stack web was updated automatically ⏫\nimages: a:1, b:2",
        ),
        (
            m.STACK_DRIFT,
            m.WARNING,
            {"name": "web", "reason": "removed", "detail": "gone", "action": "redeploy"},
            "WARNING ‼️ | Stack web drifted: removed\ngone\naction: redeploy",
        ),
        (
            m.PROCEDURE_FAILED,
            m.WARNING,
            {"name": "nightly", "reason": "stage 2 failed"},
            "WARNING ‼️ | Procedure nightly failed\nstage 2 failed",
        ),
        (
            m.SCHEDULE_RUN,
            m.OK,
            {"name": "nightly", "resource_type": "Procedure"},
            "OK ✅ | nightly (Procedure) | Scheduled run started 🕝",
        ),
        (
            m.SCHEDULE_MISSED,
            m.WARNING,
            {"name": "nightly", "resource_type": "Procedure", "due": 1_800_000_000_000},
            "WARNING ‼️ | nightly (Procedure) | Scheduled run missed ⏭"
            "\ndue: 2027-01-15 08:00:00 UTC",
        ),
    ],
)
def test_every_raised_type_has_komodos_words(
    type_: str, level: str, data: dict[str, Any], text: str
) -> None:
    alert = m.Alert(TS, level, m.Target("Stack", "x"), type_, data)
    out = request_for("Ntfy", "https://n", alert)
    assert out is not None and out.body.decode() == text


# ------------------------------------------------------------------------------- filters

AT = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)


def alerter(**cfg: Any) -> AlerterConfig:
    return AlerterConfig(enabled=cfg.pop("enabled", True), **cfg)


def test_filters_as_komodo_orders_them() -> None:
    """mod.rs send_alert_to_alerter: enabled, maintenance, alert_types, except, resources."""
    assert wants(alerter(), STATE_CHANGE, AT)
    assert not wants(alerter(enabled=False), STATE_CHANGE, AT)
    assert wants(alerter(alert_types=["StackStateChange"]), STATE_CHANGE, AT)
    assert not wants(alerter(alert_types=["ServerUnreachable"]), STATE_CHANGE, AT)
    web = ResourceTarget("Stack", "web")
    assert not wants(alerter(except_resources=[web]), STATE_CHANGE, AT)
    assert wants(alerter(resources=[web]), STATE_CHANGE, AT)
    assert not wants(alerter(resources=[ResourceTarget("Stack", "db")]), STATE_CHANGE, AT)
    assert not wants(alerter(resources=[ResourceTarget("Server", "web")]), STATE_CHANGE, AT)
    # except wins over resources
    assert not wants(alerter(resources=[web], except_resources=[web]), STATE_CHANGE, AT)
    window = MaintenanceWindow(name="w", hour=7, minute=30, duration_minutes=60, timezone="UTC")
    assert not wants(alerter(maintenance_windows=[window]), STATE_CHANGE, AT)
    late = MaintenanceWindow(name="w", hour=9, duration_minutes=60, timezone="UTC")
    assert wants(alerter(maintenance_windows=[late]), STATE_CHANGE, AT)
    chosen = recipients(
        [Alerter("a", alerter()), Alerter("b", alerter(enabled=False))], STATE_CHANGE, AT
    )
    assert [a.name for a in chosen] == ["a"]


def test_windows_daily_weekly_one_time_midnight_and_zones() -> None:
    """helpers/maintenance.rs: inclusive ends, across midnight, the window's time zone."""
    daily = MaintenanceWindow(hour=23, minute=30, duration_minutes=60, timezone="UTC")
    assert active(daily, dt.datetime(2027, 1, 15, 23, 45, tzinfo=dt.UTC))
    assert active(daily, dt.datetime(2027, 1, 16, 0, 30, tzinfo=dt.UTC))  # the end, inclusive
    assert not active(daily, dt.datetime(2027, 1, 16, 0, 30, 1, tzinfo=dt.UTC))
    assert not active(daily, dt.datetime(2027, 1, 15, 23, 29, 59, tzinfo=dt.UTC))
    weekly = MaintenanceWindow(
        schedule_type="Weekly", day_of_week="Friday", hour=8, duration_minutes=10, timezone="UTC"
    )
    assert active(weekly, AT)  # 2027-01-15 is a Friday
    assert not active(weekly, AT + dt.timedelta(days=1))
    once = MaintenanceWindow(
        schedule_type="OneTime", date="2027-01-15", hour=7, duration_minutes=90, timezone="UTC"
    )
    assert active(once, AT) and not active(once, AT + dt.timedelta(days=7))
    berlin = MaintenanceWindow(hour=9, duration_minutes=5, timezone="Europe/Berlin")
    assert active(berlin, AT)  # 08:00 UTC is 09:00 in Berlin in January
    assert not active(berlin, AT + dt.timedelta(days=180))  # summer time: 10:00 there
    assert not active(
        MaintenanceWindow(hour=8, duration_minutes=5, timezone="UTC", enabled=False), AT
    )
    assert not active(MaintenanceWindow(hour=8, duration_minutes=5, timezone="No/Where"), AT)
    assert day_number("thurs") == 3 and day_number("Sun") == 6 and day_number("x") is None
    assert problems(
        MaintenanceWindow(schedule_type="Weekly", day_of_week="Funday", duration_minutes=0)
    ) == [
        "day_of_week 'Funday' is not a day (Monday … Sunday)",
        "duration_minutes must be more than 0",
    ]


@given(
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    duration=st.integers(1, 1500),
    at=st.datetimes(
        min_value=dt.datetime(2020, 1, 1),
        max_value=dt.datetime(2030, 1, 1),
        timezones=st.just(dt.UTC),
    ),
)
def test_a_daily_window_holds_exactly_in_its_minutes(
    hour: int, minute: int, duration: int, at: dt.datetime
) -> None:
    """Against a model of minutes of the day: start <= now <= start + duration (mod a day,
    as Komodo's NaiveTime arithmetic wraps), seconds counted."""
    window = MaintenanceWindow(hour=hour, minute=minute, duration_minutes=duration, timezone="UTC")
    start = hour * 60 + minute
    end = (start + duration) % 1440
    now = at.hour * 60 + at.minute + (at.second / 60)
    if end < start:
        expected = now >= start or now <= end
    else:
        expected = start <= now <= end
    assert active(window, at) == expected


# ---------------------------------------------------------------------------------- watch


def watch_with(bus: EventBus, alerters: list[Alerter]) -> AlertWatch:
    alerts = Alerts(bus, AlertSender(bus), clock=lambda: TS / 1000)
    alerts.set_alerters(alerters)
    w = AlertWatch(CoreConfig(data_dir="", api_tokens=["-" * 16]), None, alerts)  # type: ignore[arg-type]
    w.stacks = {"web": StackFacts(True, "nas", ""), "quiet": StackFacts(False, "nas", "")}
    w.servers = {"nas": ServerFacts()}
    return w


def raised(bus: EventBus, sub: Any) -> list[dict[str, Any]]:
    return [e.data() for e in sub.subscriber.take(100) if e.kind == "alert.raised"]


def test_what_the_watch_raises_for_a_stack_going_wrong_and_back() -> None:
    bus = EventBus(None)
    w = watch_with(bus, [Alerter("all", alerter(), url="https://x")])
    with bus.subscribe(Filter(kinds=("alert",))) as sub:
        # the first state seen is no change (Komodo: no alert when prev is None)
        w.on_event("health.changed", {"stack": "web", "healthy": False, "previous": None}, 0)
        assert raised(bus, sub) == []
        w.on_event("health.changed", {"stack": "web", "healthy": True, "previous": False}, 0)
        w.on_event(
            "health.changed",
            {"stack": "web", "healthy": False, "previous": True, "detail": "web: exited"},
            0,
        )
        w.on_event("health.changed", {"stack": "web", "healthy": False, "previous": False}, 0)
        (down,) = raised(bus, sub)
        assert down["type"] == "StackStateChange" and down["level"] == "WARNING"
        assert down["alerters"] == ["all"] and down["target"] == "stack:web"
        assert "web: exited" in down["text"]
        # a failed deploy of an already alerted stack: its own alert, no second state change
        w.on_event(
            "deploy.finished",
            {"stack": "web", "status": "failed", "step": "health", "message": "bad", "run": 3},
            0,
        )
        w.on_event("health.changed", {"stack": "web", "healthy": False, "previous": True}, 0)
        (failed,) = raised(bus, sub)
        assert failed["type"] == "StackDeployFailed" and failed["level"] == "CRITICAL"
        # healthy again: one OK state change
        w.on_event("deploy.finished", {"stack": "web", "status": "healthy", "run": 4}, 0)
        w.on_event("health.changed", {"stack": "web", "healthy": True, "previous": False}, 0)
        (ok,) = raised(bus, sub)
        assert (ok["type"], ok["level"]) == ("StackStateChange", "OK")
        assert "is now Running ▶️" in ok["text"]
        # send_alerts = false holds state changes and failures
        w.on_event("deploy.finished", {"stack": "quiet", "status": "failed", "run": 5}, 0)
        w.on_event("health.changed", {"stack": "quiet", "healthy": False, "previous": True}, 0)
        assert raised(bus, sub) == []


def test_updates_drift_and_auto_updated() -> None:
    bus = EventBus(None)
    w = watch_with(bus, [])
    with bus.subscribe(Filter(kinds=("alert",))) as sub:
        w.on_event(
            "update.available",
            {"stack": "web", "service": "app", "image": "a:1", "redeploy": True},
            0,
        )
        assert raised(bus, sub) == []  # auto_update follows: no "update available"
        w.on_event(
            "update.available",
            {"stack": "quiet", "service": "app", "image": "a:1", "redeploy": False},
            0,
        )
        (available,) = raised(bus, sub)  # not held by send_alerts (Komodo sends it anyway)
        assert available["type"] == "StackImageUpdateAvailable" and available["alerters"] == []
        w.on_event("update.redeploy", {"stack": "web", "run": 9, "images": ["a:1"]}, 0)
        w.on_event("deploy.finished", {"stack": "web", "status": "healthy", "run": 9}, 0)
        (updated,) = raised(bus, sub)
        assert updated["type"] == "StackAutoUpdated" and "image: a:1" in updated["text"]
        for reason, action in (("dead", "alert"), ("removed", "ignore")):
            w.on_event("drift", {"stack": "web", "reason": reason, "action": action}, 0)
        assert raised(bus, sub) == []
        w.on_event(
            "drift",
            {"stack": "web", "reason": "changed", "detail": "scaled", "action": "alert"},
            0,
        )
        (drift,) = raised(bus, sub)
        assert drift["type"] == "StackDrift"


def test_the_calls_for_procedures_raise_komodos_types() -> None:
    bus = EventBus(None)
    alerts = Alerts(bus, AlertSender(bus), clock=lambda: TS / 1000)
    only = alerter(alert_types=["ProcedureFailed"], resources=[ResourceTarget("Procedure", "n")])
    alerts.set_alerters([Alerter("p", only, url="https://x")])
    with bus.subscribe(Filter(kinds=("alert",))) as sub:
        alerts.procedure_failed("n", "stage 1: web failed")
        alerts.schedule_missed("n", TS / 1000, "the core was down")
        alerts.schedule_run("n")
        got = raised(bus, sub)
    assert [(a["type"], a["alerters"]) for a in got] == [
        ("ProcedureFailed", ["p"]),
        ("ScheduleMissed", []),
        ("ScheduleRun", []),
    ]
    assert alerts.sender.waiting("p") == 1  # queued, nothing waited for


def test_an_alerter_that_cannot_send_says_so_as_an_event() -> None:
    bus = EventBus(None)
    alerts = Alerts(bus, AlertSender(bus))
    push = AlerterConfig(enabled=True, endpoint=AlerterEndpoint("Pushover", {"url": "https://p"}))
    alerts.set_alerters(
        [Alerter("push", push, url="https://p"), Alerter("bad", alerter(), error="[[X]] undefined")]
    )
    with bus.subscribe(Filter(kinds=("alert.failed",))) as sub:
        alerts.raise_alert(STATE_CHANGE)
        failed = {e.data()["alerter"]: e.data()["error"] for e in sub.subscriber.take(10)}
    assert failed == {
        "push": "Pushover endpoints are not sent by stackward",
        "bad": "[[X]] undefined",
    }


def test_procedure_and_schedule_events_raise_komodos_alerts() -> None:
    """api/execute/procedure.rs: ProcedureFailed with failure_alert; schedule.rs: ScheduleRun
    with schedule_alert; a missed run (stackward's) with failure_alert."""
    from core.alerts.watch import ProcedureFacts

    bus = EventBus(None)
    w = watch_with(bus, [])
    w.procedures = {"quiet": ProcedureFacts(failure_alert=False, schedule_alert=False)}
    with bus.subscribe(Filter(kinds=("alert",))) as sub:
        for name in ("nightly", "quiet"):
            w.on_event(
                "procedure.finished",
                {"procedure": name, "status": "failed", "message": "stage 1: web failed"},
                0,
            )
            w.on_event("procedure.finished", {"procedure": name, "status": "succeeded"}, 0)
            w.on_event("schedule.fired", {"procedure": name, "outcome": "started", "run": 1}, 0)
            w.on_event("schedule.fired", {"procedure": name, "outcome": "busy: running"}, 0)
            w.on_event(
                "schedule.missed",
                {"procedure": name, "count": 2, "first": 1_800_000_000.0, "more": False},
                0,
            )
        got = raised(bus, sub)
    assert [(a["type"], a["target"]) for a in got] == [
        ("ProcedureFailed", "procedure:nightly"),
        ("ScheduleRun", "procedure:nightly"),
        ("ScheduleMissed", "procedure:nightly"),
    ]
    assert "stage 1: web failed" in got[0]["text"]
    assert "2 run(s) missed while the core was down" in got[2]["text"]
