"""Rate limiting of authentication failures per source address (pure; the clock is passed in).

A sliding window: more than ``limit`` failures from one address within ``window`` seconds and
further connections from it are refused (closed like any other failure) until the window has
room again. Successful logins do not count. The table of addresses is bounded: when full, the
address with the oldest last failure is forgotten first.
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

    def _prune(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
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
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(address)
        times.append(now)
