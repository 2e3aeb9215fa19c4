"""Counting authentication failures per source address (pure; the clock is passed in).

A sliding window: an address with ``limit`` failures within ``window`` seconds is ``blocked``.
It counts failures only, and what it decides never stops a peer that proves an allowed key (a
valid signature or token always passes): the agent and the core use it to keep the log quiet
about a noisy address, and a caller may use it to refuse *failed* attempts faster, never to
refuse a client before checking what it presents. The table of addresses is bounded: when full,
the address with the oldest last failure is forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class AuthFailureLimiter:
    def __init__(self, limit: int = 20, window: float = 60.0, max_addresses: int = 4096) -> None:
        if limit < 1 or window <= 0 or max_addresses < 1:
            raise ValueError("limit, window and max_addresses must be positive")
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._quiet: set[str] = set()

    def _prune(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            self._quiet.discard(address)
            return None
        return times

    def blocked(self, address: str, now: float) -> bool:
        """Whether a new connection from ``address`` is refused at ``now``."""
        times = self._prune(address, now)
        return times is not None and len(times) >= self.limit

    def record_failure(self, address: str, now: float) -> None:
        times = self._prune(address, now)
        if times is None:
            times = deque(maxlen=self.limit)
            self._failures[address] = times
            while len(self._failures) > self.max_addresses:
                forgotten, _ = self._failures.popitem(last=False)
                self._quiet.discard(forgotten)
        else:
            self._failures.move_to_end(address)
        times.append(now)

    def first_quiet(self, address: str) -> bool:
        """True once per blocked spell of ``address`` (to log that it goes quiet)."""
        if address in self._quiet:
            return False
        self._quiet.add(address)
        return True
