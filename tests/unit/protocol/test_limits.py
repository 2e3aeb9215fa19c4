from __future__ import annotations

import random

import pytest

from protocol.backoff import Backoff
from protocol.ratelimit import AuthFailureLimiter


def test_limiter_blocks_after_the_limit_and_forgets_after_the_window() -> None:
    limiter = AuthFailureLimiter(limit=3, window=10.0)
    for t in (0.0, 1.0, 2.0):
        assert not limiter.blocked("a", t)
        limiter.record_failure("a", t)
    assert limiter.blocked("a", 3.0)
    assert not limiter.blocked("b", 3.0)
    assert not limiter.blocked("a", 10.5)  # the first failure left the window


def test_limiter_table_is_bounded() -> None:
    limiter = AuthFailureLimiter(limit=1, window=100.0, max_addresses=2)
    for address in ("a", "b", "c"):
        limiter.record_failure(address, 0.0)
    assert not limiter.blocked("a", 1.0)  # forgotten first
    assert limiter.blocked("b", 1.0) and limiter.blocked("c", 1.0)


def test_limiter_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        AuthFailureLimiter(limit=0)


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff(initial=0.5, maximum=30.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    nominal = [min(30.0, 0.5 * 2**n) for n in range(12)]
    for delay, cap in zip(delays, nominal, strict=True):
        assert cap / 2 <= delay <= cap
    assert max(delays) <= 30.0
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
    backoff.reset()
    assert backoff.next_delay() <= 0.5
