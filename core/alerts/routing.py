"""Which alerters take an alert, as Komodo's ``send_alert_to_alerter`` decides
(``bin/core/src/alert/mod.rs``). Pure.

In order: an alerter that is not ``enabled`` sends nothing; during one of its
``maintenance_windows`` nothing; when ``alert_types`` is not empty, only those types; never for a
target in ``except_resources``; when ``resources`` is not empty, only for those targets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from core.alerts.model import Alert
from core.resources.models import AlerterConfig
from core.resources.windows import in_maintenance


@dataclass(frozen=True)
class Alerter:
    """An applied ``[[alerter]]``, its URL interpolated (``error`` says why it cannot send)."""

    name: str
    config: AlerterConfig
    url: str = ""
    email: str = ""
    error: str = ""

    def __repr__(self) -> str:  # the URL carries the webhook's token
        return f"Alerter({self.name!r}, {self.config.endpoint.type})"


def wants(config: AlerterConfig, alert: Alert, at: dt.datetime) -> bool:
    if not config.enabled:
        return False
    if in_maintenance(config.maintenance_windows, at):
        return False
    if config.alert_types and alert.type not in config.alert_types:
        return False
    target = (alert.target.type, alert.target.id)
    if any((t.type, t.id) == target for t in config.except_resources):
        return False
    if config.resources and not any((t.type, t.id) == target for t in config.resources):
        return False
    return True


def recipients(alerters: list[Alerter], alert: Alert, at: dt.datetime) -> list[Alerter]:
    return [a for a in alerters if wants(a.config, alert, at)]
