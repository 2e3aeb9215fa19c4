"""Bookkeeping of unauthenticated connections on a listener (pure; the clock is passed in).

Every accepted TCP connection is unauthenticated until its handshake completes (or, on a port
that also serves plain HTTP, until it sends a request for another path). Each has a deadline
counted from the accept, and there are caps per source address and in total. A new connection
over a cap does not wait and is not refused: the *oldest* unauthenticated one of that address
(or overall) is evicted instead, so idle sockets cannot lock a real peer out, which needs only
milliseconds to authenticate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    deadline: float = 5.0  # seconds from accept to a completed handshake
    per_address: int = 32  # unauthenticated connections from one source address
    total: int = 256  # unauthenticated connections in all

    def __post_init__(self) -> None:
        if self.deadline <= 0 or self.per_address < 1 or self.total < 1:
            raise ValueError("deadline and caps must be positive")


class Admission:
    """Which connections are unauthenticated, since when, and whom to evict."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._all: OrderedDict[Hashable, tuple[str, float]] = OrderedDict()
        self._by_address: dict[str, OrderedDict[Hashable, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def count(self, address: str) -> int:
        return len(self._by_address.get(address, ()))

    def admit(self, key: Hashable, address: str, now: float) -> list[Hashable]:
        """Track a new connection; return the connections to close to stay within the caps
        (the oldest first; never the new one)."""
        evict: list[Hashable] = []
        mine = self._by_address.setdefault(address, OrderedDict())
        while len(mine) >= self.limits.per_address:
            oldest = next(iter(mine))
            self.release(oldest)
            evict.append(oldest)
        while len(self._all) >= self.limits.total:
            oldest = next(iter(self._all))
            self.release(oldest)
            evict.append(oldest)
        mine = self._by_address.setdefault(address, OrderedDict())
        mine[key] = None
        self._all[key] = (address, now)
        return evict

    def release(self, key: Hashable) -> bool:
        """The connection authenticated, left, or turned out to be plain HTTP."""
        entry = self._all.pop(key, None)
        if entry is None:
            return False
        address = entry[0]
        mine = self._by_address[address]
        del mine[key]
        if not mine:
            del self._by_address[address]
        return True

    def tracked(self, key: Hashable) -> bool:
        return key in self._all

    def remaining(self, key: Hashable, now: float) -> float:
        """Seconds left before the connection's deadline (the full deadline if untracked)."""
        entry = self._all.get(key)
        if entry is None:
            return self.limits.deadline
        return entry[1] + self.limits.deadline - now

    def expired(self, now: float) -> list[Hashable]:
        """Connections past their deadline (released here; the caller closes them)."""
        out: list[Hashable] = []
        cutoff = now - self.limits.deadline
        for key, (_, accepted) in list(self._all.items()):
            if accepted > cutoff:
                break  # in accept order: the rest are younger
            self.release(key)
            out.append(key)
        return out

    def next_deadline(self) -> float | None:
        for _, accepted in self._all.values():
            return accepted + self.limits.deadline
        return None
