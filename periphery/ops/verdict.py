"""What a health gate concluded about one service, and the rules shared by both gates."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime


class State(enum.Enum):
    READY = "ready"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(frozen=True)
class Verdict:
    """``service`` is READY, still WAITING, or FAILED (for good); ``detail`` says why."""

    service: str
    state: State
    detail: str
    # Docker ids whose logs explain the state (service id for Swarm, container ids for Compose).
    log_sources: tuple[str, ...] = field(default=(), compare=False)

    def line(self) -> str:
        return f"{self.service}: {self.detail}"


@dataclass(frozen=True)
class Rules:
    """How patient a gate is.

    ``max_failures``: this many failed tasks (Swarm) or restarts (Compose) since the deploy
    started is a crash loop. ``min_running``: a task or container without a healthcheck counts
    only after running this long (a crash loop without a healthcheck would otherwise look fine
    for an instant). ``stall_grace``: how long a task may stay unschedulable (``no suitable
    node``) before the gate gives up without waiting for its timeout.
    """

    max_failures: int = 3
    min_running: float = 1.0
    stall_grace: float = 20.0


_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?")


def parse_time(value: object) -> datetime | None:
    """A Docker RFC 3339 timestamp (nanoseconds allowed) as an aware datetime; None if unset."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    match = _TIME.fullmatch(value.strip())
    if not match:
        return None
    whole, frac, zone = match.groups()
    frac = (frac or ".0")[:7]
    zone = "+00:00" if zone in (None, "Z") else zone
    return datetime.fromisoformat(whole + frac + zone)


def now() -> datetime:
    return datetime.now(UTC)


def seconds_between(start: datetime | None, end: datetime) -> float:
    return (end - start).total_seconds() if start is not None else 0.0


def short_name(full: str, namespace: str) -> str:
    """``web`` for ``stack_web`` in stack ``stack``; other names unchanged."""
    prefix = f"{namespace}_"
    return full[len(prefix) :] if full.startswith(prefix) else full


def ignored(full: str, namespace: str, ignore: Iterable[str]) -> bool:
    names = set(ignore)
    return full in names or short_name(full, namespace) in names


def summary(verdicts: Iterable[Verdict]) -> str:
    return "; ".join(v.line() for v in verdicts)
