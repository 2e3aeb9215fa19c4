"""Schedules: Komodo's cron (six fields, seconds first; both day fields must match: croner's
``dom_and_dow(true)`` in bin/core/src/schedule.rs ``cron_parser``), its English (via
core.automation.english), in the schedule's time zone, and daylight saving time as croner 3 handles
it (croner-rust src/lib.rs ``find_occurrence`` and ``walk``: a fixed-time job in the skipped hour
runs right after the gap, once in a repeated hour; an interval job skips the gap and runs in both
passes)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from core.automation.schedule import ScheduleError, next_after, parse, times_after, times_between

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def local(ts: float, tz: str) -> str:
    return dt.datetime.fromtimestamp(ts, ZoneInfo(tz)).isoformat()


def at(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def test_cron_is_six_fields_seconds_first() -> None:
    s = parse("0 0 3 * * *", "Cron", "UTC")
    assert [local(t, "UTC") for t in times_after(s, at("2025-01-01T12:00:00+00:00"), 2)] == [
        "2025-01-02T03:00:00+00:00",
        "2025-01-03T03:00:00+00:00",
    ]
    with pytest.raises(ScheduleError, match='six, seconds first.*"0 0 3 \\* \\* \\*"'):
        parse("0 3 * * *", "Cron", "UTC")


def test_both_day_fields_must_match() -> None:
    """dom_and_dow(true): "0 0 0 1 * MON" is the 1st of a month that is a Monday."""
    s = parse("0 0 0 1 * MON", "Cron", "UTC")
    got = [local(t, "UTC")[:10] for t in times_after(s, at("2025-01-01T12:00:00+00:00"), 3)]
    assert got == ["2025-09-01", "2025-12-01", "2026-06-01"]


def test_english_in_its_time_zone() -> None:
    s = parse("at 03:00 every Sunday", "English", "Africa/Casablanca")
    assert s.cron == "0 0 3 ? * SUN"
    t = next_after(s, at("2025-06-02T00:00:00+00:00"))
    assert local(t, "Africa/Casablanca") == "2025-06-08T03:00:00+01:00"


def test_a_cron_written_without_schedule_format_is_read_as_cron_with_a_note() -> None:
    """schedule_format defaults to English (entities/mod.rs ScheduleFormat); Komodo's English
    reader makes "every minute" of "0 0 3 * * *"; stackward reads the cron and says so."""
    s = parse("0 0 3 * * *", "English", "UTC", format_written=False)
    assert s.format == "Cron" and s.cron == "0 0 3 * * *" and "schedule_format" in s.note
    with pytest.raises(ScheduleError, match="means nothing"):
        parse("0 0 3 * * *", "English", "UTC", format_written=True)


@pytest.mark.parametrize(
    ("expr", "fmt", "tz", "needle"),
    [
        ("0 0 3 * * *", "Cron", "Mars/Olympus", "time zone"),
        ("61 * * * * *", "Cron", "UTC", "out of range"),
        ("0 0 0 30 2 *", "Cron", "UTC", "no time in the next"),
        ("0 0 3 * * *", "Weekly", "UTC", "neither"),
    ],
)
def test_bad_schedules_say_why(expr: str, fmt: str, tz: str, needle: str) -> None:
    with pytest.raises(ScheduleError, match=needle):
        parse(expr, fmt, tz)


# --------------------------------------------------------------------------- daylight saving


def test_spring_forward_fixed_time_runs_right_after_the_gap() -> None:
    """Berlin skips 02:00-03:00 on 2025-03-30: 02:30 runs at 03:00 that day, then as usual."""
    s = parse("0 30 2 * * *", "Cron", BERLIN)
    assert s.fixed_time
    got = [local(t, BERLIN) for t in times_after(s, at("2025-03-29T12:00:00+00:00"), 3)]
    assert got == [
        "2025-03-30T03:00:00+02:00",
        "2025-03-31T02:30:00+02:00",
        "2025-04-01T02:30:00+02:00",
    ]


def test_spring_forward_interval_skips_the_gap() -> None:
    s = parse("0 */30 * * * *", "Cron", NEW_YORK)  # New York skips 02:00-03:00 on 2025-03-09
    got = [local(t, NEW_YORK) for t in times_after(s, at("2025-03-09T06:20:00+00:00"), 3)]
    assert got == [
        "2025-03-09T01:30:00-05:00",
        "2025-03-09T03:00:00-04:00",
        "2025-03-09T03:30:00-04:00",
    ]


def test_fall_back_fixed_time_runs_once() -> None:
    s = parse("0 30 2 * * *", "Cron", BERLIN)  # 02:00-03:00 happens twice on 2025-10-26
    got = [local(t, BERLIN) for t in times_after(s, at("2025-10-25T12:00:00+00:00"), 2)]
    assert got == ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]


def test_fall_back_interval_runs_in_both_passes() -> None:
    s = parse("0 */30 * * * *", "Cron", BERLIN)
    got = [local(t, BERLIN) for t in times_after(s, at("2025-10-25T23:50:00+00:00"), 5)]
    assert got == [
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-26T02:00:00+01:00",
        "2025-10-26T02:30:00+01:00",
        "2025-10-26T03:00:00+01:00",
    ]
    # from inside the second pass, the first pass is behind
    second = at("2025-10-26T02:10:00+01:00")
    assert local(next_after(s, second), BERLIN) == "2025-10-26T02:30:00+01:00"


def test_english_daily_over_both_transitions() -> None:
    s = parse("Every day at 01:00", "English", NEW_YORK)
    days = [
        local(t, NEW_YORK)
        for t in times_between(s, at("2025-03-08T00:00:00-05:00"), at("2025-03-11T00:00:00-04:00"))
    ]
    assert days == [
        "2025-03-08T01:00:00-05:00",
        "2025-03-09T01:00:00-05:00",
        "2025-03-10T01:00:00-04:00",
    ]


# ------------------------------------------------------------------------------ properties

EXPRS = st.sampled_from(
    [
        "0 */15 * * * *",
        "30 0 * * * *",
        "0 0 3 * * *",
        "0 30 2 * * *",
        "0 0 1 */1 * ?",
        "0 0/5 1-3 * * *",
        "0 0 3 ? * SUN",
        "15,45 * 2 * * *",
    ]
)
ZONES = st.sampled_from(["UTC", BERLIN, NEW_YORK, "Australia/Lord_Howe", "Asia/Kolkata"])
STARTS = st.floats(
    min_value=at("2024-01-01T00:00:00+00:00"), max_value=at("2027-01-01T00:00:00+00:00")
)


@settings(max_examples=60, deadline=None)
@given(EXPRS, ZONES, STARTS)
def test_times_move_forward_and_never_repeat(expr: str, tz: str, start: float) -> None:
    s = parse(expr, "Cron", tz)
    times = times_after(s, start, 6)
    assert times[0] > start
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    if s.fixed_time:  # once per wall-clock date at most
        dates = [local(t, tz)[:10] for t in times]
        assert len(dates) == len(set(dates))


@settings(max_examples=60, deadline=None)
@given(EXPRS, STARTS)
def test_in_utc_the_times_are_croniters(expr: str, start: float) -> None:
    s = parse(expr, "Cron", "UTC")
    it = croniter(
        expr,
        dt.datetime.fromtimestamp(start, dt.UTC).replace(tzinfo=None),
        second_at_beginning=True,
        day_or=False,
    )
    want = [it.get_next(dt.datetime).replace(tzinfo=dt.UTC).timestamp() for _ in range(4)]
    assert times_after(s, start, 4) == want
