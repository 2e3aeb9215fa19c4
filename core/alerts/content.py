"""An alert's words, as Komodo's alerters write them (``bin/core/src/alert/``: ``mod.rs``
``standard_alert_content`` for Ntfy, ``discord.rs``, ``slack.rs``). Pure.

Each alert is a title and body lines; a marker makes names and values bold (``**x**`` on
Discord, ``*x*`` on Slack, nothing on Ntfy). Komodo's links to its UI are left out (stackward's
events and API say the rest); stackward's own types (``StackDeployFailed``, ``StackDrift``,
``ScheduleMissed``) are written the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from core.alerts import model as m

Mark = Callable[[str], str]

LEVEL_TEXT = {m.CRITICAL: "CRITICAL 🚨", m.WARNING: "WARNING ‼️", m.OK: "OK ✅"}
STATE_TEXT = {  # Komodo's fmt_stack_state
    "running": "Running ▶️",
    "stopped": "Stopped 🛑",
    "restarting": "Restarting 🔄",
    "down": "Down ⬇️",
}


def plain(text: str) -> str:
    return text


def _target(data: dict[str, Any], b: Mark) -> list[str]:
    if data.get("swarm_name"):
        return [f"swarm: {b(str(data['swarm_name']))}"]
    if data.get("server_name"):
        return [f"server: {b(str(data['server_name']))}"]
    return []


def _at(ms: object) -> str:
    if not isinstance(ms, int):
        return str(ms)
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def title_and_body(alert: m.Alert, b: Mark = plain) -> tuple[str, list[str]]:
    """The alert's title and body lines, names and values marked with ``b``."""
    d = alert.data
    level = LEVEL_TEXT.get(alert.level, alert.level)
    name = b(str(d.get("name", alert.target.id)))
    extra = [str(d["detail"])] if d.get("detail") else []
    match alert.type:
        case m.STACK_STATE_CHANGE:
            to = STATE_TEXT.get(str(d.get("to")), str(d.get("to")))
            return f"🥞 Stack {name} is now {to}", [
                *_target(d, b),
                f"previous: {b(str(d.get('from')))}",
                *extra,
            ]
        case m.STACK_IMAGE_UPDATE_AVAILABLE:
            return f"⬆ Stack {name} has an update available", [
                *_target(d, b),
                f"service: {b(str(d.get('service')))}",
                f"image: {b(str(d.get('image')))}",
            ]
        case m.STACK_AUTO_UPDATED:
            images = [str(i) for i in d.get("images", [])]
            label = "images" if len(images) > 1 else "image"
            return f"⬆ Stack {name} was updated automatically ⏫", [
                *_target(d, b),
                f"{label}: {b(', '.join(images))}",
            ]
        case m.SERVER_UNREACHABLE:
            if alert.level == m.OK:
                return f"{level} | {name} is now {b('connected')}", []
            err = d.get("err") or {}
            reason = err.get("error", "") if isinstance(err, dict) else str(err)
            return f"{level} | {name} is {b('unreachable')} ❌", (
                [f"error: {reason}"] if reason else []
            )
        case m.STACK_DEPLOY_FAILED:
            step = [f"step: {b(str(d['step']))}"] if d.get("step") else []
            reason = [str(d["reason"])] if d.get("reason") else []
            return f"{level} | Stack {name} failed to deploy ❌", [
                *_target(d, b),
                *step,
                *reason,
            ]
        case m.STACK_DRIFT:
            return f"{level} | Stack {name} drifted: {d.get('reason')}", [
                *_target(d, b),
                *extra,
                f"action: {b(str(d.get('action')))}",
            ]
        case m.PROCEDURE_FAILED:
            reason = [str(d["reason"])] if d.get("reason") else []
            return f"{level} | Procedure {name} failed", reason
        case m.SCHEDULE_RUN:
            kind = d.get("resource_type", "Procedure")
            return f"{level} | {name} ({kind}) | Scheduled run started 🕝", []
        case m.SCHEDULE_MISSED:
            kind = d.get("resource_type", "Procedure")
            reason = [str(d["reason"])] if d.get("reason") else []
            return f"{level} | {name} ({kind}) | Scheduled run missed ⏭", [
                f"due: {b(_at(d.get('due')))}",
                *reason,
            ]
    return f"{level} | {alert.type} | {alert.target.type} {name}", extra


def standard(alert: m.Alert) -> str:
    """Komodo's ``standard_alert_content`` (what Ntfy receives)."""
    title, body = title_and_body(alert)
    return "\n".join([title, *body])


def discord(alert: m.Alert) -> str:
    title, body = title_and_body(alert, lambda s: f"**{s}**")
    return "\n".join([title, *body])


def slack(alert: m.Alert) -> tuple[str, str, str]:
    """``(text, header, section)``: the fallback text (marked), the header block's plain text
    and the section block's mrkdwn."""
    text, body = title_and_body(alert, lambda s: f"*{s}*")
    header, _ = title_and_body(alert)
    return text, header, "\n".join(body)
