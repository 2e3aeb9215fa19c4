"""Bookkeeping of unauthenticated connections on a listener (pure; the clock is passed in).

Every accepted TCP connection is unauthenticated until its handshake completes (or, on a port
that also serves plain HTTP, until it sends a request for another path). Each has a deadline
counted from the accept, and there are caps per source address and in total. A new connection
over a cap does not wait and is not refused: another unauthenticated one is evicted instead,
so idle sockets cannot lock a real peer out, which needs only milliseconds to authenticate.

Whom to evict: the connection that made the least progress (:class:`Stage`: nothing received,
some bytes, the websocket upgrade, a handshake message), and among those the one that has been
stuck at its stage the longest. A real peer moves through the stages in milliseconds, so it is
never the one stuck longest at the lowest stage while a flood holds connections open; idle
sockets go first, then connections that upgraded and stalled.

Progress is what the peer sent, not what the server got round to reading: a busy listener
accepts a batch of connections before it reads any of them, and a real peer's request already
waiting in its socket must not make it look idle. So before a connection that has received
nothing is evicted, the caller's ``has_bytes`` is asked (a zero-timeout poll of the socket); a
connection with bytes waiting moves to ``RECEIVING`` and another victim is sought.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


class Stage(enum.IntEnum):
    """How far an unauthenticated connection got."""

    ACCEPTED = 0  # nothing received yet
    RECEIVING = 1  # bytes arrived (an HTTP request on its way)
    UPGRADED = 2  # the handshake took over (the websocket upgrade of a handshake path)
    HANDSHAKING = 3  # a handshake message was accepted


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    deadline: float = 5.0  # seconds from accept to a completed handshake
    per_address: int = 32  # unauthenticated connections from one source address
    total: int = 256  # unauthenticated connections in all

    def __post_init__(self) -> None:
        if self.deadline <= 0 or self.per_address < 1 or self.total < 1:
            raise ValueError("deadline and caps must be positive")


@dataclass(slots=True)
class _Entry:
    address: str
    accepted: float
    stage: Stage = Stage.ACCEPTED


class _Queues:
    """Connections by stage, each stage in the order they reached it."""

    __slots__ = ("stages", "count")

    def __init__(self) -> None:
        self.stages: list[OrderedDict[Hashable, None]] = [OrderedDict() for _ in Stage]
        self.count = 0

    def add(self, key: Hashable, stage: Stage) -> None:
        self.stages[stage][key] = None
        self.count += 1

    def remove(self, key: Hashable, stage: Stage) -> None:
        del self.stages[stage][key]
        self.count -= 1

    def first_to_evict(self) -> Hashable:
        for queue in self.stages:
            if queue:
                return next(iter(queue))
        raise LookupError("empty")


class Admission:
    """Which connections are unauthenticated, since when, how far they got, whom to evict."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._entries: dict[Hashable, _Entry] = {}
        self._all = _Queues()
        self._by_address: dict[str, _Queues] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, address: str) -> int:
        queues = self._by_address.get(address)
        return queues.count if queues is not None else 0

    def admit(
        self,
        key: Hashable,
        address: str,
        now: float,
        has_bytes: Callable[[Hashable], bool] | None = None,
    ) -> list[Hashable]:
        """Track a new connection; return the connections to close to stay within the caps
        (least progress first, then stuck longest; never the new one). ``has_bytes(key)``
        says whether a connection that has received nothing has bytes waiting (it then counts
        as receiving and is not evicted for being idle)."""
        evict: list[Hashable] = []
        mine = self._by_address.get(address)
        while mine is not None and mine.count >= self.limits.per_address:
            victim = self._victim(mine, has_bytes)
            self.release(victim)
            evict.append(victim)
            mine = self._by_address.get(address)
        while self._all.count >= self.limits.total:
            victim = self._victim(self._all, has_bytes)
            self.release(victim)
            evict.append(victim)
        self._entries[key] = _Entry(address, now)
        self._all.add(key, Stage.ACCEPTED)
        self._by_address.setdefault(address, _Queues()).add(key, Stage.ACCEPTED)
        return evict

    def _victim(self, queues: _Queues, has_bytes: Callable[[Hashable], bool] | None) -> Hashable:
        while True:  # ends: each pass moves one connection out of ACCEPTED for good
            victim = queues.first_to_evict()
            if has_bytes is None or self._entries[victim].stage is not Stage.ACCEPTED:
                return victim
            if not has_bytes(victim):
                return victim
            self.advance(victim, Stage.RECEIVING)

    def advance(self, key: Hashable, stage: Stage) -> None:
        """The connection got to ``stage`` (a lower or equal one changes nothing)."""
        entry = self._entries.get(key)
        if entry is None or stage <= entry.stage:
            return
        for queues in (self._all, self._by_address[entry.address]):
            queues.remove(key, entry.stage)
            queues.add(key, stage)
        entry.stage = stage

    def stage(self, key: Hashable) -> Stage | None:
        entry = self._entries.get(key)
        return entry.stage if entry is not None else None

    def release(self, key: Hashable) -> bool:
        """The connection authenticated, left, or turned out to be plain HTTP."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._all.remove(key, entry.stage)
        mine = self._by_address[entry.address]
        mine.remove(key, entry.stage)
        if not mine.count:
            del self._by_address[entry.address]
        return True

    def tracked(self, key: Hashable) -> bool:
        return key in self._entries

    def remaining(self, key: Hashable, now: float) -> float:
        """Seconds left before the connection's deadline (the full deadline if untracked)."""
        entry = self._entries.get(key)
        if entry is None:
            return self.limits.deadline
        return entry.accepted + self.limits.deadline - now

    def expired(self, now: float) -> list[Hashable]:
        """Connections past their deadline (released here; the caller closes them)."""
        cutoff = now - self.limits.deadline
        out = [k for k, e in self._entries.items() if e.accepted <= cutoff]
        for key in out:
            self.release(key)
        return out

    def next_deadline(self) -> float | None:
        if not self._entries:
            return None
        return min(e.accepted for e in self._entries.values()) + self.limits.deadline
