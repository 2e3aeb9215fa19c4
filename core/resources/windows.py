"""Maintenance windows, as Komodo's ``is_in_maintenance`` reads them
(``bin/core/src/helpers/maintenance.rs``). Pure.

A window is ``Daily`` (the default), ``Weekly`` (on ``day_of_week``) or ``OneTime`` (on
``date``, ``YYYY-MM-DD``), from ``hour:minute`` for ``duration_minutes``, in the window's
``timezone`` (an IANA name; empty: the core's local time, as Komodo without a core timezone),
inclusive at both ends, across midnight when it ends the next day; a window with
``enabled = false`` never holds. Komodo parses ``day_of_week`` with aliases (``monday``, ``Mon``,
``mon``); a day it cannot read makes its window Monday's, here it is refused by ``validate``
(:func:`day_number` returns None) and never holds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.resources.models import MaintenanceWindow

SCHEDULE_TYPES = ("Daily", "Weekly", "OneTime")
_DAYS = {
    "monday": 0,
    "mon": 0,
    "tuesday": 1,
    "tue": 1,
    "wednesday": 2,
    "wed": 2,
    "thursday": 3,
    "thurs": 3,
    "thu": 3,
    "friday": 4,
    "fri": 4,
    "saturday": 5,
    "sat": 5,
    "sunday": 6,
    "sun": 6,
}


def day_number(day: str) -> int | None:
    """Monday 0 … Sunday 6 (Komodo's ``DayOfWeek`` names and aliases, any case), or None."""
    return _DAYS.get(day.strip().lower())


def zone(name: str) -> dt.tzinfo | None:
    """The window's zone (None when the name is unknown); local time for an empty name."""
    if not name:
        return dt.datetime.now().astimezone().tzinfo
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _parse_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _in_time(window: MaintenanceWindow, now: dt.time) -> bool:
    start = dt.time(window.hour, window.minute) if _valid_time(window) else dt.time(0, 0)
    start_min = start.hour * 60 + start.minute
    end_total = start_min + window.duration_minutes
    end = dt.time((end_total // 60) % 24, end_total % 60)
    if end < start:  # across midnight
        return now >= start or now <= end
    return start <= now <= end


def _valid_time(window: MaintenanceWindow) -> bool:
    return 0 <= window.hour <= 23 and 0 <= window.minute <= 59


def active(window: MaintenanceWindow, at: dt.datetime) -> bool:
    """Whether ``window`` holds at ``at`` (an aware time)."""
    if not window.enabled:
        return False
    tz = zone(window.timezone)
    if tz is None:
        return False  # Komodo: "Failed to parse maintenance window timezone" -> not active
    local = at.astimezone(tz)
    now = local.time().replace(microsecond=0)
    match window.schedule_type or "Daily":
        case "Daily":
            return _in_time(window, now)
        case "Weekly":
            return local.weekday() == day_number(window.day_of_week) and _in_time(window, now)
        case "OneTime":
            return local.date() == _parse_date(window.date) and _in_time(window, now)
    return False


def in_maintenance(windows: Iterable[MaintenanceWindow], at: dt.datetime) -> bool:
    return any(active(w, at) for w in windows)


def problems(window: MaintenanceWindow) -> list[str]:
    """What ``validate`` says of a window that cannot hold as written (empty: fine)."""
    out = []
    if (window.schedule_type or "Daily") not in SCHEDULE_TYPES:
        out.append(f"schedule_type {window.schedule_type!r} is not one of Daily, Weekly, OneTime")
    if window.schedule_type == "Weekly" and day_number(window.day_of_week) is None:
        out.append(f"day_of_week {window.day_of_week!r} is not a day (Monday … Sunday)")
    if window.schedule_type == "OneTime" and _parse_date(window.date) is None:
        out.append(f"date {window.date!r} is not a date written YYYY-MM-DD")
    if not _valid_time(window):
        out.append(f"{window.hour}:{window.minute:02d} is not a time (hour 0-23, minute 0-59)")
    if window.duration_minutes <= 0:
        out.append("duration_minutes must be more than 0")
    if window.timezone and zone(window.timezone) is None:
        out.append(f"timezone {window.timezone!r} is not a time zone name (e.g. Europe/Berlin)")
    return out
