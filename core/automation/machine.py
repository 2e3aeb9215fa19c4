"""A procedure run as an I/O-free state machine, as Komodo's ``execute_procedure`` runs one
(``bin/core/src/helpers/procedure.rs``):

- the stages run in order, the disabled ones passed over;
- a stage's executions (the enabled ones; ``Batch*`` expanded into one per match when the stage
  starts) all start at once and the stage waits for every one of them (``join_all``: a failure
  does not cancel its siblings);
- a stage with a failed execution fails the procedure, with the reason, and no later stage
  starts;
- a cancelled run starts nothing more.

The driver (:mod:`core.automation.runner`) feeds it what happened (``start``, ``expanded``,
``finished``, ``cancel``) and does what it answers (:class:`Expand`, :class:`Launch`,
:class:`StageEnded`, :class:`Ended`), in order.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

E = TypeVar("E")


class Phase(enum.Enum):
    IDLE = "idle"
    EXPANDING = "expanding"
    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True)
class Expand:
    stage: int


@dataclass(frozen=True)
class Launch(Generic[E]):
    stage: int
    index: int  # the execution's position in the (expanded) stage
    execution: E


@dataclass(frozen=True)
class StageEnded:
    stage: int
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class Ended:
    status: str  # succeeded | failed | cancelled
    message: str = ""


Action = Expand | Launch[E] | StageEnded | Ended


@dataclass
class ProcedureMachine(Generic[E]):
    """``stages``: for each stage, its name and whether it is enabled."""

    stages: Sequence[tuple[str, bool]]
    phase: Phase = Phase.IDLE
    stage: int = -1
    _pending: set[int] = field(default_factory=set)
    _failures: list[str] = field(default_factory=list)
    status: str = ""
    message: str = ""

    def start(self) -> list[Action[E]]:
        if self.phase is not Phase.IDLE:
            raise RuntimeError("the procedure has started already")
        return self._next()

    def _next(self) -> list[Action[E]]:
        self.stage += 1
        while self.stage < len(self.stages) and not self.stages[self.stage][1]:
            self.stage += 1
        if self.stage >= len(self.stages):
            return self._end("succeeded", "")
        self.phase = Phase.EXPANDING
        return [Expand(self.stage)]

    def _end(self, status: str, message: str) -> list[Action[E]]:
        self.phase = Phase.DONE
        self.status, self.message = status, message
        return [Ended(status, message)]

    def expanded(self, stage: int, executions: Sequence[E]) -> list[Action[E]]:
        """The stage's executions, ready to start (in order)."""
        if self.phase is not Phase.EXPANDING or stage != self.stage:
            return []
        if not executions:
            return [StageEnded(stage, True), *self._next()]
        self.phase = Phase.RUNNING
        self._pending = set(range(len(executions)))
        self._failures = []
        return [Launch(stage, i, e) for i, e in enumerate(executions)]

    def expand_failed(self, stage: int, reason: str) -> list[Action[E]]:
        """The stage could not be expanded (a pattern that does not compile)."""
        if self.phase is not Phase.EXPANDING or stage != self.stage:
            return []
        message = f"stage {self.stages[stage][0]!r}: {reason}"
        return [StageEnded(stage, False, reason), *self._end("failed", message)]

    def finished(self, stage: int, index: int, ok: bool, reason: str = "") -> list[Action[E]]:
        """An execution of the running stage ended."""
        if self.phase is not Phase.RUNNING or stage != self.stage or index not in self._pending:
            return []
        self._pending.discard(index)
        if not ok:
            self._failures.append(reason or "failed")
        if self._pending:
            return []
        if self._failures:
            reason_text = "; ".join(self._failures)
            message = f"stage {self.stages[stage][0]!r} failed: {reason_text}"
            return [StageEnded(stage, False, reason_text), *self._end("failed", message)]
        return [StageEnded(stage, True), *self._next()]

    def cancel(self, reason: str) -> list[Action[E]]:
        """Start nothing more; the executions already running are the driver's to stop."""
        if self.phase is Phase.DONE:
            return []
        return self._end("cancelled", reason)

    @property
    def running(self) -> frozenset[int]:
        return frozenset(self._pending) if self.phase is Phase.RUNNING else frozenset()
