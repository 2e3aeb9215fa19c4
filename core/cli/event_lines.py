"""One readable line per event (pure): what ``stackward events`` prints.

Output lines of a deploy are printed under it, indented and marked with their stack, one line
per line of output; everything else is ``TIME  #ID  KIND  RESOURCE  summary``.
"""

from __future__ import annotations

import time
from typing import Any


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def summary(kind: str, d: dict[str, Any]) -> tuple[str, str]:
    """``(text, color name)`` for an event's data."""
    match kind:
        case "core.started":
            return f"core {d.get('version', '')} listening on {d.get('listen', '')}", "bold"
        case "resources.loaded":
            return (
                f"{d.get('resources', 0)} resource(s) from {d.get('files', 0)} file(s),"
                f" {d.get('errors', 0)} error(s), {d.get('warnings', 0)} warning(s)",
                "red" if d.get("errors") else "dim",
            )
        case "webhook.accepted":
            return (
                f"{d.get('forge')} {d.get('event')} → {d.get('target')} {d.get('name')}"
                f" ({d.get('outcome', '')}) {str(d.get('commit', ''))[:12]}",
                "dim",
            )
        case "change.detected":
            fetch = f", fetch {d['fetch_ms']:.0f} ms" if d.get("fetch_ms") else ""
            return (
                f"{d.get('source')}: {str(d.get('previous', ''))[:12] or '∅'} →"
                f" {str(d.get('commit', ''))[:12]}{fetch}",
                "yellow",
            )
        case "plan.made":
            counts = d.get("counts", {})
            text = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if n) or "no changes"
            deploys = d.get("deploys", [])
            more = f"; deploys {', '.join(deploys)}" if deploys else ""
            return f"plan {d.get('plan')}: {text}{more}", "dim"
        case "resource.applied":
            return f"{d.get('action')} {d.get('type')} {d.get('name')}", "dim"
        case "deploy.started":
            return (
                f"deploy {d.get('deploy')} on {d.get('server')} at"
                f" {str(d.get('commit', ''))[:12]} ({d.get('trigger')})",
                "bold",
            )
        case "deploy.step":
            state = d.get("state")
            took = f" {d['seconds']:.2f}s" if d.get("seconds") else ""
            msg = f": {d['message']}" if d.get("message") else ""
            color = {"ok": "green", "failed": "red"}.get(str(state), "dim")
            return f"{d.get('step')} {state}{took}{msg}", color
        case "deploy.finished":
            status = str(d.get("status"))
            msg = f": {d['message']}" if d.get("message") else ""
            color = {"healthy": "green", "failed": "red"}.get(status, "yellow")
            return f"{status} in {d.get('seconds', 0):.1f}s{msg}", color
        case "health.changed":
            healthy = bool(d.get("healthy"))
            detail = f" ({d['detail']})" if d.get("detail") else ""
            return ("healthy" if healthy else "not healthy") + detail, "green" if healthy else "red"
        case "docker.event":
            extra = " ".join(f"{k}={v}" for k, v in sorted(d.get("detail", {}).items()))
            return f"{d.get('type')} {d.get('action')} {d.get('name')} {extra}".rstrip(), "dim"
        case "docker.engine":
            lost = d.get("state") == "lost"
            return (
                f"engine on {d.get('server')} {d.get('state')}"
                + (f": {d['message']}" if d.get("message") else ""),
                "red" if lost else "green",
            )
        case "drift":
            run = f" (run {d['run']})" if d.get("run") else ""
            return f"{d.get('reason')}: {d.get('detail')} → {d.get('action')}{run}", "red"
        case "periphery.connected":
            return f"connected ({d.get('key')})", "green"
        case "periphery.lost":
            return f"lost: {d.get('reason')}", "yellow"
    return str(d), ""


def render(event: dict[str, Any], c: dict[str, str]) -> list[str]:
    """The lines to print for one event (or control message)."""
    if "control" in event:
        match event["control"]:
            case "lagged":
                return [
                    f"{c['yellow']}-- fell behind: missed {event['count']} event(s)"
                    f" (#{event['first']}–#{event['last']}); catching up{c['reset']}"
                ]
            case "expired":
                return [
                    f"{c['yellow']}-- events #{event['first']}–#{event['last']} are no longer"
                    f" kept{c['reset']}"
                ]
            case "live":
                return [f"{c['dim']}-- live (last #{event['last']}){c['reset']}"]
        return []
    kind, data = str(event["kind"]), event.get("data") or {}
    if kind == "deploy.output":
        stack = data.get("stack", "")
        text = str(data.get("text", "")).rstrip("\n")
        return [f"    {c['dim']}{stack} │{c['reset']} {line}" for line in text.split("\n")]
    text, color = summary(kind, data)
    on = c.get(color, "") if color else ""
    return [
        f"{c['dim']}{_clock(float(event['time']))} #{event['id']:<6}{c['reset']}"
        f" {kind:<19} {event.get('resource', ''):<24} {on}{text}{c['reset'] if on else ''}"
    ]
