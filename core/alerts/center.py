"""Raising an alert: the one way, whoever raises it (:class:`~core.alerts.watch.AlertWatch` for
what the event bus says, procedures and schedules by calling :class:`Alerts`).

``raise_alert`` picks the alerters that take it (:mod:`core.alerts.routing`), publishes
``alert.raised`` (its type, level, target, text and those alerters: every alert is an event,
sent anywhere or not), and queues its request for each (:mod:`core.alerts.sender`). It never
waits: callers on any path may raise alerts at no cost.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from core.alerts import content
from core.alerts import model as m
from core.alerts.endpoints import DEFAULT_URLS, request_for
from core.alerts.routing import Alerter, recipients
from core.alerts.sender import AlertSender
from core.events.bus import EventBus
from core.events.model import AlertDelivery, AlertRaised, Kind

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Alerts:
    def __init__(self, events: EventBus, sender: AlertSender, clock: Clock = time.time) -> None:
        self.events = events
        self.sender = sender
        self.clock = clock
        self.alerters: list[Alerter] = []

    def set_alerters(self, alerters: list[Alerter]) -> None:
        """The applied ``[[alerter]]`` entries (the watch sets them after each apply)."""
        self.alerters = list(alerters)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def raise_alert(self, alert: m.Alert) -> list[str]:
        """Publish ``alert.raised`` and queue the alert for the alerters that take it; their
        names. Never blocks."""
        at = dt.datetime.fromtimestamp(alert.ts / 1000, dt.UTC)
        chosen = recipients(self.alerters, alert, at)
        self.events.publish(
            Kind.ALERT_RAISED,
            alert.target.resource,
            AlertRaised(
                type=alert.type,
                level=alert.level,
                target=alert.target.resource,
                text=content.standard(alert),
                alerters=[a.name for a in chosen],
                resolved=alert.resolved,
            ),
        )
        log.info(
            "alert %s (%s) for %s: %s",
            alert.type,
            alert.level,
            alert.target.resource,
            ", ".join(a.name for a in chosen) or "no alerter takes it",
        )
        for alerter in chosen:
            self._queue(alerter, alert)
        return [a.name for a in chosen]

    def _queue(self, alerter: Alerter, alert: m.Alert) -> None:
        kind = alerter.config.endpoint.type
        url = alerter.url or DEFAULT_URLS.get(kind, "")
        outgoing = request_for(kind, url, alert, alerter.email) if url else None
        if alerter.error or outgoing is None:
            why = alerter.error or (
                f"{kind} endpoints are not sent by stackward" if url else "no url"
            )
            self.events.publish(
                Kind.ALERT_FAILED,
                alert.target.resource,
                AlertDelivery(
                    alerter=alerter.name,
                    type=alert.type,
                    target=alert.target.resource,
                    attempts=0,
                    error=why,
                ),
            )
            return
        self.sender.enqueue(alerter.name, alert, outgoing)

    # ----------------------------------------------------------------- for procedures

    def procedure_failed(self, procedure: str, reason: str) -> None:
        """Komodo's ``ProcedureFailed`` (a procedure with ``failure_alert``): queued, never
        blocks."""
        self.raise_alert(
            m.Alert(
                ts=self.now_ms(),
                level=m.WARNING,
                target=m.Target("Procedure", procedure),
                type=m.PROCEDURE_FAILED,
                data={"id": procedure, "name": procedure, "reason": reason},
                resolved_ts=self.now_ms(),
            )
        )

    def schedule_missed(self, procedure: str, due: float, reason: str = "") -> None:
        """stackward's ``ScheduleMissed``: a scheduled run at ``due`` (epoch seconds) did not
        happen (the core was down); queued, never blocks."""
        self.raise_alert(
            m.Alert(
                ts=self.now_ms(),
                level=m.WARNING,
                target=m.Target("Procedure", procedure),
                type=m.SCHEDULE_MISSED,
                data={
                    "resource_type": "Procedure",
                    "id": procedure,
                    "name": procedure,
                    "due": int(due * 1000),
                    "reason": reason,
                },
                resolved_ts=self.now_ms(),
            )
        )

    def schedule_run(self, procedure: str) -> None:
        """Komodo's ``ScheduleRun`` (a procedure with ``schedule_alert``): a scheduled run
        started; queued, never blocks."""
        self.raise_alert(
            m.Alert(
                ts=self.now_ms(),
                level=m.OK,
                target=m.Target("Procedure", procedure),
                type=m.SCHEDULE_RUN,
                data={"resource_type": "Procedure", "id": procedure, "name": procedure},
                resolved_ts=self.now_ms(),
            )
        )
