"""A procedure's schedule: its expression read as Komodo reads it, and its times. Pure.

Komodo (``bin/core/src/schedule.rs``) parses ``schedule_format = "Cron"`` with ``croner``
(seconds required: six fields, seconds first; day of month and day of week must both match,
``dom_and_dow(true)``), and ``"English"`` (the default) by turning the sentence into cron first
(:mod:`core.automation.english`). Times are in ``schedule_timezone``, else the core's
``timezone``, else the host's.

Here the cron fields are parsed and matched by ``croniter`` (a maintained library that knows
six-field crons with the seconds first, names, ``L``, ``#``, ``?``, ``N/S`` steps and the AND of
both day fields: what Komodo's files use), on the wall clock of the schedule's time zone
(``zoneinfo``). Daylight saving time is handled here as croner 3 does it
(``src/lib.rs``, ``find_occurrence``):

- a **fixed-time** schedule (one value each for seconds, minutes and hours, e.g. ``0 30 2 * * *``)
  whose time falls in the hour the clock skips runs at the first second after the gap, that
  day; in the hour the clock repeats it runs once, the first time;
- an **interval** schedule (a ``*``, a step or several values in those fields) skips the times
  the clock skips, and runs at each matching time of both passes of a repeated hour.

Times are absolute (UNIX seconds): ``next_after(t)`` is the first time strictly after ``t``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from core.automation.english import EnglishError, to_cron
from core.exceptions import CoreError

UTC = dt.UTC
_ONE = dt.timedelta(seconds=1)
MAX_SEARCH_YEARS = 5  # a schedule with no time in this many years is refused


class ScheduleError(CoreError):
    """A schedule that cannot be read (the message says what is wrong and what to write)."""


@dataclass(frozen=True)
class Schedule:
    expression: str  # as written
    format: str  # "Cron" or "English" (as read)
    cron: str  # the six fields it runs on
    timezone: str  # the zone's name
    fixed_time: bool
    note: str = ""  # how it was read, when that needs saying

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def describe(self) -> str:
        how = "" if self.format == "Cron" else f" (cron {self.cron})"
        return f"{self.expression!r}{how} in {self.timezone}"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(
            f"time zone {name!r} is not known (a TZ name such as Europe/Berlin or UTC)"
        ) from exc


_CRONISH = re.compile(r"^[\d*/?,\-LW#A-Za-z]+(\s+[\d*/?,\-LW#A-Za-z]+){4,6}$")


def _looks_like_cron(text: str) -> bool:
    return bool(_CRONISH.match(text.strip())) and any(c.isdigit() or c == "*" for c in text)


def parse(expression: str, fmt: str, timezone: str, *, format_written: bool = True) -> Schedule:
    """Read a schedule. ``format_written`` False: ``schedule_format`` was not written (Komodo's
    default, English); a cron expression is then read as cron, with a note saying so (Komodo's
    reader would make "every minute" of it). Raises :class:`ScheduleError`."""
    text = expression.strip()
    zone(timezone)
    if fmt not in ("Cron", "English"):
        raise ScheduleError(f'schedule_format {fmt!r} is neither "Cron" nor "English"')
    note = ""
    if fmt == "English":
        if not format_written and len(text.split()) == 6 and _looks_like_cron(text):
            try:
                return replace(
                    _cron_schedule(text, "Cron", timezone, ""),
                    note="schedule_format is not set, so Komodo reads this cron expression as"
                    " English (and runs it every minute); stackward reads it as cron: set"
                    ' schedule_format = "Cron" to say so',
                )
            except ScheduleError:
                pass
        try:
            cron = to_cron(text)
        except EnglishError as exc:
            raise ScheduleError(str(exc)) from exc
        return _cron_schedule(cron, "English", timezone, note, written=text)
    return _cron_schedule(text, "Cron", timezone, note)


def _fields(text: str) -> list[str]:
    fields = text.split()
    if len(fields) != 6:
        hint = ""
        if len(fields) == 5:
            hint = f'; with the seconds first: "0 {text}"'
        raise ScheduleError(
            f"cron {text!r} has {len(fields)} fields: Komodo's cron has six, seconds first"
            f" (second minute hour day-of-month month day-of-week){hint}"
        )
    return fields


def _single(field: str) -> bool:
    return field.isdigit()


def _cron_schedule(cron: str, fmt: str, timezone: str, note: str, *, written: str = "") -> Schedule:
    fields = _fields(cron)
    try:
        croniter(cron, dt.datetime(2000, 1, 1), second_at_beginning=True, day_or=False)
    except (CroniterError, ValueError, KeyError) as exc:
        raise ScheduleError(f"cron {cron!r}: {exc}") from exc
    fixed = all(_single(f) for f in fields[:3])
    built = Schedule(written or cron, fmt, cron, timezone, fixed, note)
    try:
        next_after(built, dt.datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    except ScheduleError as exc:
        raise ScheduleError(f"cron {cron!r}: {exc}") from exc
    return built


# ------------------------------------------------------------------------------------ times


def _wall_matches(schedule: Schedule, start: dt.datetime) -> croniter:
    """croniter over naive wall-clock times, from ``start`` (exclusive)."""
    return croniter(
        schedule.cron,
        start,
        second_at_beginning=True,
        day_or=False,
        max_years_between_matches=MAX_SEARCH_YEARS,
    )


def _instants(wall: dt.datetime, tz: ZoneInfo) -> list[dt.datetime]:
    """The instants (UTC) a naive wall time names in ``tz``: one, two (the clock went back:
    earlier first) or none (the clock skipped it)."""
    out = []
    for fold in (0, 1):
        local = wall.replace(tzinfo=tz, fold=fold)
        utc = local.astimezone(UTC)
        if utc.astimezone(tz).replace(tzinfo=None) == wall and utc not in out:
            out.append(utc)
    return sorted(out)


def _after_gap(wall: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """The first wall second after the gap ``wall`` is in, as an instant."""
    # The instant the clock jumped: the UTC time of the wall time read with the offset before
    # the gap lands after the jump; step back to the jump itself.
    probe = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    lo, hi = probe - dt.timedelta(hours=3), probe
    before = lo.astimezone(tz).utcoffset()
    while hi - lo > _ONE:
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid.astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


def _date_matches(schedule: Schedule, wall: dt.datetime) -> bool:
    day_fields = schedule.cron.split()[3:]
    return bool(
        croniter.match(
            " ".join(["0", "0", *day_fields]),
            wall.replace(hour=0, minute=0, second=0, microsecond=0),
        )
    )


def _walk(schedule: Schedule, origin: dt.datetime, inclusive: bool) -> dt.datetime:
    """Walk the wall clock of the zone from ``origin`` (an aware UTC time) to the first match
    not behind it (croner's ``walk``)."""
    tz = schedule.zone
    start = origin.astimezone(tz).replace(tzinfo=None, fold=0)
    it = _wall_matches(schedule, start - _ONE if inclusive else start)
    limit = origin + dt.timedelta(days=366 * MAX_SEARCH_YEARS)

    def behind(instant: dt.datetime) -> bool:
        return instant < origin if inclusive else instant <= origin

    while True:
        try:
            wall = it.get_next(dt.datetime)
        except (CroniterError, StopIteration) as exc:
            raise ScheduleError(f"no time in the next {MAX_SEARCH_YEARS} years") from exc
        instants = _instants(wall, tz)
        if len(instants) == 1:
            if not behind(instants[0]):
                return instants[0]
        elif len(instants) == 2:
            earlier, later = instants
            if not behind(earlier):
                return earlier
            if not schedule.fixed_time and not behind(later):
                return later
        else:  # in the gap the clock skipped
            if schedule.fixed_time:
                after = _after_gap(wall, tz)
                if _date_matches(
                    schedule, after.astimezone(tz).replace(tzinfo=None)
                ) and not behind(after):
                    return after
            # interval schedules skip the times that do not exist
        if instants and instants[0] > limit:
            raise ScheduleError(f"no time in the next {MAX_SEARCH_YEARS} years")


def _fold_edge(origin: dt.datetime, tz: ZoneInfo) -> dt.datetime | None:
    """When ``origin`` is in the first pass of a repeated hour: the instant the second pass
    starts (the clock goes back). None otherwise."""
    local = origin.astimezone(tz)
    instants = _instants(local.replace(tzinfo=None, microsecond=0), tz)
    if len(instants) != 2 or origin >= instants[1]:
        return None
    before = local.utcoffset()
    lo, hi = origin, instants[1]
    while hi - lo > _ONE:
        mid = (lo + (hi - lo) / 2).replace(microsecond=0)
        if mid.astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


def next_after(schedule: Schedule, t: float) -> float:
    """The first time of the schedule strictly after ``t`` (UNIX seconds)."""
    origin = dt.datetime.fromtimestamp(t, UTC)
    tz = schedule.zone
    found = _walk(schedule, origin, inclusive=False)
    if schedule.fixed_time:
        return found.timestamp()
    edge = _fold_edge(origin, tz)
    if edge is None or found < edge:
        return found.timestamp()
    other = _walk(schedule, edge, inclusive=True)
    return min(found, other).timestamp()


def times_after(schedule: Schedule, t: float, count: int) -> list[float]:
    out: list[float] = []
    for _ in range(count):
        t = next_after(schedule, t)
        out.append(t)
    return out


def times_between(schedule: Schedule, start: float, end: float, limit: int = 1000) -> list[float]:
    """The times in ``(start, end]``, at most ``limit`` of them."""
    out: list[float] = []
    t = start
    while len(out) < limit:
        t = next_after(schedule, t)
        if t > end:
            break
        out.append(t)
    return out
