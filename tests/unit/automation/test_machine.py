"""The procedure state machine runs as Komodo's ``execute_procedure`` (bin/core/src/helpers/
procedure.rs, ``execute_procedure`` and ``execute_procedure_stage``): stages in order, disabled
ones passed over, a stage's executions all at once (``join_all``), a failure ends the procedure
after its stage and nothing later starts."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from core.automation.machine import (
    Ended,
    Expand,
    Launch,
    Phase,
    ProcedureMachine,
    StageEnded,
)


def test_stages_in_order_and_a_failure_stops_the_procedure() -> None:
    m: ProcedureMachine[str] = ProcedureMachine(
        [("a", True), ("off", False), ("b", True), ("c", True)]
    )
    assert m.start() == [Expand(0)]
    assert m.expanded(0, ["x", "y"]) == [Launch(0, 0, "x"), Launch(0, 1, "y")]
    assert m.finished(0, 1, True) == []
    assert m.finished(0, 0, True) == [StageEnded(0, True), Expand(2)]  # "off" passed over
    assert m.expanded(2, ["z", "w"]) == [Launch(2, 0, "z"), Launch(2, 1, "w")]
    assert m.finished(2, 0, False, "z broke") == []  # its sibling still runs (join_all)
    assert m.finished(2, 1, True) == [
        StageEnded(2, False, "z broke"),
        Ended("failed", "stage 'b' failed: z broke"),
    ]
    assert m.phase is Phase.DONE and m.status == "failed"


def test_empty_procedure_and_empty_stage_succeed() -> None:
    assert ProcedureMachine[str]([]).start() == [Ended("succeeded", "")]
    m: ProcedureMachine[str] = ProcedureMachine([("only", True)])
    m.start()
    assert m.expanded(0, []) == [StageEnded(0, True), Ended("succeeded", "")]


def test_expansion_failure_fails_the_stage() -> None:
    m: ProcedureMachine[str] = ProcedureMachine([("s", True), ("t", True)])
    m.start()
    assert m.expand_failed(0, "bad pattern") == [
        StageEnded(0, False, "bad pattern"),
        Ended("failed", "stage 's': bad pattern"),
    ]


class ProcedureRun(RuleBasedStateMachine):
    """Random stage shapes, completion orders, outcomes and cancels: the invariants hold."""

    def __init__(self) -> None:
        super().__init__()
        self.m: ProcedureMachine[int] | None = None
        self.sizes: list[int] = []
        self.launched: list[tuple[int, int]] = []
        self.running: set[tuple[int, int]] = set()
        self.ended: list[Ended] = []
        self.stage_results: dict[int, bool] = {}
        self.failed_any = False
        self.cancelled = False
        self.expanding: int | None = None

    def _apply(self, actions: list) -> None:  # type: ignore[type-arg]
        for a in actions:
            if isinstance(a, Expand):
                assert self.expanding is None and not self.running
                assert all(s < a.stage for s in self.stage_results)
                self.expanding = a.stage
            elif isinstance(a, Launch):
                assert (a.stage, a.index) not in self.launched
                self.launched.append((a.stage, a.index))
                self.running.add((a.stage, a.index))
            elif isinstance(a, StageEnded):
                assert not any(s == a.stage for s, _ in self.running)
                self.stage_results[a.stage] = a.ok
            elif isinstance(a, Ended):
                self.ended.append(a)

    @rule(
        stages=st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=5),
    )
    @precondition(lambda self: self.m is None)
    def start(self, stages: list[tuple[int, bool]]) -> None:
        self.sizes = [n for n, _ in stages]
        self.m = ProcedureMachine([(f"s{i}", on) for i, (_, on) in enumerate(stages)])
        self._apply(self.m.start())

    @rule()
    @precondition(lambda self: self.m is not None and self.expanding is not None)
    def expand(self) -> None:
        assert self.m is not None and self.expanding is not None
        stage, self.expanding = self.expanding, None
        self._apply(self.m.expanded(stage, list(range(self.sizes[stage]))))

    @rule(data=st.data(), ok=st.booleans())
    @precondition(lambda self: self.m is not None and bool(self.running))
    def finish(self, data: st.DataObject, ok: bool) -> None:
        assert self.m is not None
        stage, index = data.draw(st.sampled_from(sorted(self.running)))
        self.running.discard((stage, index))
        self.failed_any |= not ok
        self._apply(self.m.finished(stage, index, ok, f"{stage}.{index} failed"))

    @rule()
    @precondition(lambda self: self.m is not None and not self.ended)
    def cancel(self) -> None:
        assert self.m is not None
        self.cancelled = True
        self.expanding = None
        self._apply(self.m.cancel("stopped"))

    @rule()
    def nothing_happens(self) -> None:
        """Always possible (a finished run takes no more input)."""

    @invariant()
    def ends_once_and_truthfully(self) -> None:
        assert len(self.ended) <= 1
        if not self.ended:
            return
        end = self.ended[0]
        if self.cancelled:
            assert end.status in ("cancelled", "failed", "succeeded")
            return
        assert end.status == ("failed" if self.failed_any else "succeeded")
        if end.status == "succeeded":  # every enabled stage ran, every execution once
            enabled = [i for i, n in enumerate(self.sizes) if self.m and self.m.stages[i][1]]
            assert sorted(self.stage_results) == enabled
            assert len(self.launched) == sum(self.sizes[i] for i in enabled)

    @invariant()
    def nothing_after_a_failed_stage(self) -> None:
        failed = [s for s, ok in self.stage_results.items() if not ok]
        if failed:
            assert all(s <= failed[0] for s, _ in self.launched)


TestProcedureRun = ProcedureRun.TestCase
TestProcedureRun.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
