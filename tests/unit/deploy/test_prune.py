"""core.deploy.prune against Komodo's auto_prune (bin/core/src/helpers/prune.rs:
``spawn_prune_loop`` waits ``wait_until_timelength(OneDay, 5000)``, ``prune_images`` picks
``config.enabled && config.auto_prune``; bin/periphery/src/api/docker.rs, ``PruneImages``)."""

from __future__ import annotations

import calendar
import time

from hypothesis import given
from hypothesis import strategies as st

from core.deploy.prune import DAY, OFFSET, next_prune, prune_command, prune_targets
from core.resources.models import ServerConfig


def utc(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")))


def test_once_a_day_five_seconds_past_midnight_utc() -> None:
    assert next_prune(utc("2026-11-30 11:56:00")) == utc("2026-12-01 00:00:05")
    assert next_prune(utc("2026-12-01 00:00:04")) == utc("2026-12-01 00:00:05")
    assert next_prune(utc("2026-12-01 00:00:05")) == utc("2026-12-02 00:00:05")


@given(st.floats(min_value=0, max_value=4e9))
def test_the_next_prune_is_within_a_day_and_on_the_mark(now: float) -> None:
    at = next_prune(now)
    assert now < at <= now + DAY
    assert (at - OFFSET) % DAY == 0


def test_enabled_servers_with_auto_prune_only() -> None:
    servers = {
        "on": ServerConfig(enabled=True),  # auto_prune defaults to true, as Komodo's
        "off": ServerConfig(enabled=True, auto_prune=False),
        "disabled": ServerConfig(),  # Komodo's default: enabled = false
    }
    assert prune_targets(servers) == ["on"]


def test_what_is_pruned() -> None:
    command = prune_command()
    assert command.argv == ["docker", "image", "prune", "-a", "-f"]
    assert command.timeout > 0
