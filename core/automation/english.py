"""Komodo's English schedules (``schedule_format = "English"``), read into its six-field cron.
Pure.

Komodo hands the sentence to the ``english-to-cron`` crate (``str_cron_syntax``) and keeps the
first six fields of what it makes (``find_next_occurrence`` in ``bin/core/src/schedule.rs``).
This reader makes the same cron for the sentences that crate documents and tests (its
``tests/test.rs`` table is this module's test), but where the crate silently drops words that
carry meaning it refuses the sentence and says which words: a bare number (``"0 0 3 * * *"``
read as English is "every minute" to the crate), a year (Komodo cuts that field off),
``starting at`` (ignored by the crate), a weekday or a month day with no time and no frequency
(the crate runs it every minute of that day).

What it reads, in any order, case-insensitively (``Run``, ``every``, ``at``, ``on``, ``the``,
``of``, ``only`` are fillers; ``, `` is ``and``):

- a frequency: ``every [N] second(s)|minute(s)|hour(s)|day(s)`` (also ``sec``, ``min``, ``hr``);
- times of day: ``09:00``, ``9am``, ``9:30 pm``, ``noon``, ``midnight``, several joined by
  ``and`` (one minute for all); ``between 6:00 am and 8:00 pm`` (whole hours: an hour range);
- weekdays: ``Monday``, ``mon``, ``Tuesdays``, ``weekend(s)``, joined by ``and``, or a range
  ``Monday through|to Friday``;
- days of the month: ``the 1st and 15th [of the month]``, ``every 2nd day [of the month]``;
- months: ``September``, ``sep``, joined by ``and``, or ``from January to March``.

The cron has Komodo's fields: seconds, minutes, hours, day of month, month, day of week (``?``:
any); a time sets seconds to 0, a frequency of days sets the unset hour and minute to 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.exceptions import CoreError


class EnglishError(CoreError):
    """A sentence this reader cannot turn into a schedule (the message says which words)."""


WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_WEEKDAY_NAMES = {
    **{d.lower(): d for d in WEEKDAYS},
    "monday": "MON",
    "tuesday": "TUE",
    "wednesday": "WED",
    "thursday": "THU",
    "friday": "FRI",
    "saturday": "SAT",
    "sunday": "SUN",
    "tues": "TUE",
    "thur": "THU",
    "thurs": "THU",
}
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTH_NAMES = {
    **{m.lower(): m for m in MONTHS},
    "january": "JAN",
    "february": "FEB",
    "march": "MAR",
    "april": "APR",
    "june": "JUN",
    "july": "JUL",
    "august": "AUG",
    "sept": "SEP",
    "september": "SEP",
    "october": "OCT",
    "november": "NOV",
    "december": "DEC",
}
_UNITS = {
    "second": "second",
    "seconds": "second",
    "sec": "second",
    "secs": "second",
    "minute": "minute",
    "minutes": "minute",
    "min": "minute",
    "mins": "minute",
    "hour": "hour",
    "hours": "hour",
    "hr": "hour",
    "hrs": "hour",
    "day": "day",
    "days": "day",
}
_FILLERS = {"run", "fire", "at", "on", "the", "of", "only", "in", "every", "each", "month", "a"}
_RANGE = {"to", "through", "thru", "until", "-"}

_TOKEN = re.compile(
    r"""
    (?P<time>\d{1,2}(?::\d{2})?\s*(?:a\.?m\.?|p\.?m\.?)(?![a-z])|\d{1,2}:\d{2})
    | (?P<ordinal>\d+(?:st|nd|rd|th))(?![a-z])
    | (?P<number>\d+)(?![a-z\d])
    | (?P<word>[a-z]+)
    | (?P<dash>-)
    | (?P<other>\S)
    """,
    re.VERBOSE,
)


@dataclass
class _Sentence:
    frequency: tuple[str, int | None] | None = None  # unit, every N (None: every one)
    hours: list[int] = field(default_factory=list)
    minute: int | None = None
    hour_range: tuple[int, int] | None = None
    weekdays: list[str] = field(default_factory=list)
    weekday_range: tuple[str, str] | None = None
    month_days: list[int] = field(default_factory=list)
    months: list[str] = field(default_factory=list)
    month_range: tuple[str, str] | None = None


def _time(text: str) -> tuple[int, int]:
    t = text.replace(" ", "").replace(".", "")
    suffix = t[-2:] if t[-2:] in ("am", "pm") else ""
    body = t[: -len(suffix)] if suffix else t
    hour_s, _, minute_s = body.partition(":")
    hour, minute = int(hour_s), int(minute_s or 0)
    if minute >= 60:
        raise EnglishError(f"{text!r}: minute {minute} is not below 60")
    if suffix:
        if not 1 <= hour <= 12:
            raise EnglishError(f"{text!r}: {hour} is not an hour of a 12-hour clock")
        hour = hour % 12 + (12 if suffix == "pm" else 0)
    elif hour > 23:
        raise EnglishError(f"{text!r}: {hour} is not an hour of the day")
    return hour, minute


def to_cron(sentence: str) -> str:
    """The six-field cron Komodo runs for ``sentence``. Raises :class:`EnglishError`."""
    text = sentence.strip().lower().replace(",", " and ")
    if not text:
        raise EnglishError("the schedule is empty")
    tokens: list[tuple[str, str]] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "other"
        tokens.append((kind, m.group(kind)))
    s = _Sentence()
    i = 0

    def peek(k: int = 0) -> tuple[str, str]:
        return tokens[i + k] if i + k < len(tokens) else ("end", "")

    def set_frequency(unit: str, n: int | None) -> None:
        if s.frequency is not None:
            raise EnglishError(f"{sentence!r}: two frequencies; give one (every N {unit}s)")
        if n is not None and n < 1:
            raise EnglishError(f"{sentence!r}: every {n} {unit}s is never")
        s.frequency = (unit, n)

    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "time" or (kind == "word" and value in ("noon", "midnight")):
            hour, minute = (
                (12, 0) if value == "noon" else (0, 0) if value == "midnight" else _time(value)
            )
            if s.minute is not None and minute != s.minute:
                raise EnglishError(
                    f"{sentence!r}: times with different minutes ({s.minute:02d} and"
                    f" {minute:02d}) cannot be one schedule"
                )
            s.minute = minute
            if hour not in s.hours:
                s.hours.append(hour)
            i += 1
        elif kind == "number":
            n = int(value)
            nxt = peek(1)
            if nxt[0] == "word" and nxt[1] in _UNITS:
                set_frequency(_UNITS[nxt[1]], n)
                i += 2
            elif len(value) == 4:
                raise EnglishError(
                    f"{sentence!r}: the year {value}: Komodo's schedules have no year field"
                    " (it would be cut off and the schedule run every year)"
                )
            else:
                raise EnglishError(
                    f"{sentence!r}: the number {value} means nothing here"
                    + (
                        '; this looks like a cron expression: set schedule_format = "Cron"'
                        if re.fullmatch(r"[\d*/?,\-\sA-Za-z#L]+", sentence)
                        and len(sentence.split()) in (5, 6)
                        else " (write 'every N minutes', 'at 09:00', 'on the 1st')"
                    )
                )
        elif kind == "ordinal":
            day = int(re.match(r"\d+", value).group())  # type: ignore[union-attr]
            if not 1 <= day <= 31:
                raise EnglishError(f"{sentence!r}: {value} is not a day of a month")
            if day not in s.month_days:
                s.month_days.append(day)
            i += 2 if peek(1) in (("word", "day"), ("word", "days")) else 1
        elif kind == "word" and value in _UNITS:
            # "every minute", "every day", "Run second": every one of the unit
            set_frequency(_UNITS[value], None)
            i += 1
        elif kind == "word" and (
            value.rstrip("s") in _WEEKDAY_NAMES
            or value in _WEEKDAY_NAMES
            or value.rstrip("s") in ("weekend",)
        ):
            word = value if value in _WEEKDAY_NAMES else value.rstrip("s")
            if word == "weekend":
                days = ["SAT", "SUN"]
            else:
                days = [_WEEKDAY_NAMES[word]]
            nxt, after = peek(1), peek(2)
            if (
                (nxt[1] in _RANGE)
                and after[0] == "word"
                and (after[1] in _WEEKDAY_NAMES or after[1].rstrip("s") in _WEEKDAY_NAMES)
            ):
                end = _WEEKDAY_NAMES[
                    after[1] if after[1] in _WEEKDAY_NAMES else after[1].rstrip("s")
                ]
                if s.weekday_range is not None or s.weekdays:
                    raise EnglishError(f"{sentence!r}: two sets of weekdays; give one")
                s.weekday_range = (days[0], end)
                i += 3
                continue
            if s.weekday_range is not None:
                raise EnglishError(f"{sentence!r}: two sets of weekdays; give one")
            s.weekdays.extend(d for d in days if d not in s.weekdays)
            i += 1
        elif kind == "word" and value in _MONTH_NAMES:
            month = _MONTH_NAMES[value]
            nxt, after = peek(1), peek(2)
            if nxt[1] in _RANGE and after[0] == "word" and after[1] in _MONTH_NAMES:
                s.month_range = (month, _MONTH_NAMES[after[1]])
                i += 3
                continue
            if month not in s.months:
                s.months.append(month)
            i += 1
        elif kind == "word" and value == "from":
            i += 1  # "from January to March": the range is read at the month
        elif kind == "word" and value == "between":
            a, conj, b = peek(1), peek(2), peek(3)
            if a[0] != "time" or conj[1] not in ("and", *_RANGE) or b[0] != "time":
                raise EnglishError(f"{sentence!r}: 'between' wants two times: between 6am and 8pm")
            (h1, m1), (h2, m2) = _time(a[1]), _time(b[1])
            if m1 or m2:
                raise EnglishError(
                    f"{sentence!r}: between {a[1]} and {b[1]}: whole hours only (Komodo's"
                    " reader keeps the hours)"
                )
            if h2 < h1:
                raise EnglishError(f"{sentence!r}: between {a[1]} and {b[1]}: the end is earlier")
            s.hour_range = (h1, h2)
            i += 4
        elif kind == "word" and value in ("starting", "start", "beginning"):
            raise EnglishError(
                f"{sentence!r}: '{value}' is ignored by Komodo's reader (the schedule would start"
                ' at once); write the times you mean, or use schedule_format = "Cron"'
            )
        elif kind == "word" and value in ("and", *_FILLERS) or kind == "dash":
            i += 1
        else:
            raise EnglishError(
                f"{sentence!r}: {value!r} is not understood (e.g. 'every day at 01:00',"
                " 'every 15 minutes', 'at 03:00 every Sunday')"
            )
    return _cron(sentence, s)


def _list(values: list[int]) -> str:
    return ",".join(str(v) for v in values)


def _ordered(names: list[str], order: tuple[str, ...]) -> str:
    return ",".join(n for n in order if n in names)


def _cron(sentence: str, s: _Sentence) -> str:
    sec, minute, hour, dom, month, dow = "0", "*", "*", "*", "*", "?"
    has_time = bool(s.hours)
    unit, n = s.frequency if s.frequency is not None else ("", None)
    if unit == "second":
        sec = "*" if n is None else f"0/{n}"
    elif unit == "minute":
        minute = "*" if n is None else f"0/{n}"
    elif unit == "hour":
        if has_time:
            raise EnglishError(f"{sentence!r}: a frequency of hours and a time of day; give one")
        hour, minute = ("*" if n is None else f"0/{n}"), "0"
    elif unit == "day":
        dom = f"*/{n or 1}"
        hour, minute = "0", "0"
    if has_time:
        if unit in ("second", "minute") and s.hour_range is None:
            hour = _list(s.hours)
            if unit == "second":
                minute = str(s.minute)
        else:
            hour, minute = _list(s.hours), str(s.minute)
    if s.hour_range is not None:
        if has_time:
            raise EnglishError(f"{sentence!r}: 'between' and a time of day; give one")
        hour = f"{s.hour_range[0]}-{s.hour_range[1]}"
        if unit not in ("second", "minute", "hour"):
            minute = "0"
    if s.month_days:
        if unit == "day":
            raise EnglishError(f"{sentence!r}: every N days and days of the month; give one")
        dom = _list(sorted(s.month_days)) if len(s.month_days) > 1 else str(s.month_days[0])
        if hour == "*":
            hour = "0"
        if minute == "*":
            minute = "0"
    if s.weekdays or s.weekday_range:
        if s.month_days:
            raise EnglishError(
                f"{sentence!r}: weekdays and days of the month; Komodo runs only on days that are"
                " both: use cron to say so"
            )
        dow = (
            f"{s.weekday_range[0]}-{s.weekday_range[1]}"
            if s.weekday_range
            else _ordered(s.weekdays, WEEKDAYS)
        )
        dom = "?"
        if not has_time and not unit and s.hour_range is None:
            raise EnglishError(
                f"{sentence!r}: a weekday without a time or a frequency (Komodo's reader runs it"
                " every minute of that day): add one, e.g. 'at 09:00'"
            )
    if s.months or s.month_range:
        month = (
            f"{s.month_range[0]}-{s.month_range[1]}"
            if s.month_range
            else _ordered(s.months, MONTHS)
        )
    if not (unit or has_time or s.month_days or s.weekdays or s.weekday_range):
        raise EnglishError(
            f"{sentence!r}: no time and no frequency (e.g. 'every day at 01:00',"
            " 'every 15 minutes')"
        )
    return " ".join((sec, minute, hour, dom, month, dow))
