from __future__ import annotations

from datetime import UTC, datetime

from periphery.ops.verdict import ignored, parse_time, short_name


def test_parse_time_nanoseconds_and_zones() -> None:
    assert parse_time("2026-11-27T10:46:01.123456789Z") == datetime(
        2026, 11, 27, 10, 46, 1, 123456, tzinfo=UTC
    )
    assert parse_time("2026-11-27T10:46:01Z") == datetime(2026, 11, 27, 10, 46, 1, tzinfo=UTC)
    assert parse_time("2026-11-27T11:46:01.5+01:00") == datetime(
        2026, 11, 27, 10, 46, 1, 500000, tzinfo=UTC
    )
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time(None) is None
    assert parse_time("yesterday") is None


def test_names() -> None:
    assert short_name("stack_web", "stack") == "web"
    assert short_name("other_web", "stack") == "other_web"
    assert ignored("stack_init", "stack", ["init"])
    assert ignored("stack_init", "stack", ["stack_init"])
    assert not ignored("stack_web", "stack", ["init"])
