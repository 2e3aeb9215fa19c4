"""What an alert is, in Komodo's shape (``client/core/rs/src/entities/alert.rs``). Pure.

An :class:`Alert` has a time (ms), a level (``OK``, ``WARNING``, ``CRITICAL``), a target (the
resource: ``{"type": "Stack", "id": "web"}``; ids are names here, as in a sync file), a type
(Komodo's ``AlertData`` variant) and that variant's fields. A Custom endpoint receives it as
Komodo serialises it (:func:`komodo_json`).

The types stackward raises (:data:`RAISED`), with what raises them:

==============================  =========  =============================================
type                            level      when
==============================  =========  =============================================
``StackDeployFailed`` (*)       CRITICAL   a deploy of the stack failed
``StackStateChange``            WARNING    the stack turned unhealthy or went down outside a
                                           deploy; ``OK`` when it is healthy again
``StackDrift`` (*)              WARNING    the engine was changed by hand (drift)
``ServerUnreachable``           CRITICAL   an agent is gone (``agent_lost_grace``); ``OK``
                                           when it is back
``StackImageUpdateAvailable``   OK         a newer image, and no ``auto_update`` follows
``StackAutoUpdated``            OK         ``auto_update`` deployed the newer images
``ProcedureFailed``             WARNING    a procedure failed (``failure_alert``)
``ScheduleRun``                 OK         a scheduled run started (``schedule_alert``)
``ScheduleMissed`` (*)          WARNING    a scheduled run did not happen (the core was down)
==============================  =========  =============================================

(*) stackward's own; every other name is Komodo's. ``alert_types`` of an alerter may name any of
Komodo's variants (:data:`KOMODO_TYPES`): the ones stackward never raises just never match.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from core.resources import schema as S

OK: Final = "OK"
WARNING: Final = "WARNING"
CRITICAL: Final = "CRITICAL"
LEVELS: Final = (OK, WARNING, CRITICAL)

STACK_DEPLOY_FAILED: Final = "StackDeployFailed"
STACK_STATE_CHANGE: Final = "StackStateChange"
STACK_DRIFT: Final = "StackDrift"
SERVER_UNREACHABLE: Final = "ServerUnreachable"
STACK_IMAGE_UPDATE_AVAILABLE: Final = "StackImageUpdateAvailable"
STACK_AUTO_UPDATED: Final = "StackAutoUpdated"
PROCEDURE_FAILED: Final = "ProcedureFailed"
SCHEDULE_RUN: Final = "ScheduleRun"
SCHEDULE_MISSED: Final = "ScheduleMissed"

RAISED: Final = S.ALERT_TYPES_RAISED
"""The alert types stackward raises."""

KOMODO_TYPES: Final = S.ALERT_TYPES_KOMODO
"""Komodo's ``AlertDataVariant`` names (what ``alert_types`` may hold in a Komodo file)."""

ALERT_TYPES: Final = KOMODO_TYPES | set(RAISED)

TARGET_TYPES: Final = S.TARGET_TYPES
"""Komodo's ``ResourceTarget`` variants (an alerter's ``resources`` / ``except_resources``)."""

TARGET_KIND: Final = {
    "Stack": "stack",
    "Server": "server",
    "Swarm": "swarm",
    "Procedure": "procedure",
    "Repo": "repo",
    "ResourceSync": "resource_sync",
    "Alerter": "alerter",
}
"""A target type → the resource kind of a sync file (``resource`` of an event)."""


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Komodo's ``ResourceTarget``: ``{type = "Stack", id = "web"}``."""

    type: str
    id: str

    @property
    def resource(self) -> str:
        """As events name it: ``stack:web``."""
        kind = TARGET_KIND.get(self.type, self.type.lower())
        return f"{kind}:{self.id}"


class Alert(msgspec.Struct, frozen=True):
    ts: int  # Unix milliseconds
    level: str  # OK | WARNING | CRITICAL
    target: Target
    type: str  # an AlertData variant (RAISED)
    data: dict[str, Any]  # the variant's fields, by Komodo's names
    resolved: bool = True
    resolved_ts: int | None = None


_encoder = msgspec.json.Encoder()


def komodo_json(alert: Alert) -> bytes:
    """The alert as Komodo's ``Alert`` serialises (what a Custom endpoint receives): ``ts``,
    ``resolved``, ``level``, ``target {type, id}``, ``data {type, data}``, ``resolved_ts``."""
    return _encoder.encode(
        {
            "ts": alert.ts,
            "resolved": alert.resolved,
            "level": alert.level,
            "target": {"type": alert.target.type, "id": alert.target.id},
            "data": {"type": alert.type, "data": alert.data},
            "resolved_ts": alert.resolved_ts,
        }
    )
