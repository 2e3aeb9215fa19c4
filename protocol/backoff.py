"""Jittered exponential backoff for reconnecting (pure; the random source is injectable)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays ``initial * factor**n`` capped at ``maximum``, each drawn from its upper half.

    "Equal jitter": a delay ``d`` becomes uniform in ``[d/2, d]``, so peers that lost a core at
    the same moment spread out, yet each still waits at least half the nominal delay.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        nominal = min(self.maximum, self.initial * self.factor**self.attempt)
        if nominal < self.maximum:
            self.attempt += 1
        return self.rng.uniform(nominal / 2, nominal)

    def reset(self) -> None:
        self.attempt = 0
