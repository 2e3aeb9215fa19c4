"""The bookkeeping of unauthenticated connections (protocol/admission.py), pure: whom a new
connection evicts, against a model, driven by Hypothesis."""

from __future__ import annotations

import itertools
import resource

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from protocol.admission import Admission, AdmissionLimits, Stage
from protocol.guard import listen_backlog


def test_idle_sockets_go_before_a_peer_in_its_handshake() -> None:
    admission = Admission(AdmissionLimits(per_address=3, total=100))
    admission.admit("real", "10.0.0.1", 0.0)
    admission.advance("real", Stage.RECEIVING)
    admission.advance("real", Stage.UPGRADED)
    evicted = [v for i in range(10) for v in admission.admit(f"idle{i}", "10.0.0.1", 1.0 + i)]
    assert evicted == [f"idle{i}" for i in range(8)]  # the oldest idle, never the new one
    assert admission.stage("real") is Stage.UPGRADED
    # stalled upgrades go in the order they stalled, once no idle one is left
    admission.advance("idle8", Stage.UPGRADED)
    admission.advance("idle9", Stage.UPGRADED)
    assert admission.admit("new", "10.0.0.1", 20.0) == ["real"]
    assert admission.count("10.0.0.1") == 3 and len(admission) == 3


def test_the_total_cap_spans_addresses_and_a_release_frees_a_place() -> None:
    admission = Admission(AdmissionLimits(per_address=10, total=2))
    admission.admit("a", "1", 0.0)
    admission.admit("b", "2", 1.0)
    admission.advance("a", Stage.RECEIVING)
    assert admission.admit("c", "3", 2.0) == ["b"]
    assert admission.release("c") and not admission.release("c")
    assert admission.admit("d", "4", 3.0) == []
    assert admission.remaining("a", 4.0) == pytest.approx(1.0)
    assert admission.expired(5.0) == ["a"] and admission.next_deadline() == 8.0


def test_a_request_waiting_unread_is_progress_not_idleness() -> None:
    # A busy listener accepts a batch before it reads any of them: the real peer accepted
    # first, its request already in its socket, must not be evicted as the oldest idle one.
    admission = Admission(AdmissionLimits(per_address=3, total=100))
    waiting = {"real"}
    admission.admit("real", "10.0.0.1", 0.0, waiting.__contains__)
    evicted = [
        v
        for i in range(6)
        for v in admission.admit(f"idle{i}", "10.0.0.1", 1.0, waiting.__contains__)
    ]
    assert evicted == [f"idle{i}" for i in range(4)]
    assert admission.stage("real") is Stage.RECEIVING
    # without the check (or once everything has bytes) the order is stage then age
    waiting.update(f"idle{i}" for i in range(10))
    assert admission.admit("x", "10.0.0.1", 2.0, waiting.__contains__) == ["real"]


class AdmissionMachine(RuleBasedStateMachine):
    """The model: each connection's address and (stage, when it reached it); a new one evicts
    the least progress, stuck longest, of its address over the per-address cap, then of all
    over the total."""

    def __init__(self) -> None:
        super().__init__()
        self.limits = AdmissionLimits(deadline=5.0, per_address=3, total=5)
        self.admission = Admission(self.limits)
        self.model: dict[int, tuple[str, Stage, int]] = {}
        self.waiting: set[int] = set()  # bytes in the socket, not read yet
        self.ticks = itertools.count()
        self.keys = itertools.count()

    def _victim(self, address: str | None) -> int:
        while True:
            mine = {k: v for k, v in self.model.items() if address is None or v[0] == address}
            victim = min(mine, key=lambda k: (mine[k][1], mine[k][2]))
            where, stage, _ = self.model[victim]
            if stage is not Stage.ACCEPTED or victim not in self.waiting:
                return victim
            self.model[victim] = (where, Stage.RECEIVING, next(self.ticks))

    @rule(address=st.sampled_from(["a", "b", "c"]))
    def admit(self, address: str) -> None:
        key = next(self.keys)
        expected = []
        while sum(1 for v in self.model.values() if v[0] == address) >= self.limits.per_address:
            victim = self._victim(address)
            expected.append(victim)
            del self.model[victim]
        while len(self.model) >= self.limits.total:
            victim = self._victim(None)
            expected.append(victim)
            del self.model[victim]
        assert self.admission.admit(key, address, 0.0, self.waiting.__contains__) == expected
        self.model[key] = (address, Stage.ACCEPTED, next(self.ticks))

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100), stage=st.sampled_from(list(Stage)))
    def advance(self, pick: int, stage: Stage) -> None:
        key = sorted(self.model)[pick % len(self.model)]
        self.admission.advance(key, stage)
        address, current, since = self.model[key]
        if stage > current:
            self.model[key] = (address, stage, next(self.ticks))

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100))
    def bytes_arrive(self, pick: int) -> None:
        self.waiting.add(sorted(self.model)[pick % len(self.model)])

    @precondition(lambda self: self.model)
    @rule(pick=st.integers(0, 100))
    def release(self, pick: int) -> None:
        key = sorted(self.model)[pick % len(self.model)]
        assert self.admission.release(key)
        del self.model[key]

    @invariant()
    def counts_match(self) -> None:
        assert len(self.admission) == len(self.model) <= self.limits.total
        for address in "abc":
            count = sum(1 for v in self.model.values() if v[0] == address)
            assert self.admission.count(address) == count <= self.limits.per_address
        for key, (_, stage, _) in self.model.items():
            assert self.admission.stage(key) is stage


AdmissionMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
test_admission_machine = AdmissionMachine.TestCase


@pytest.mark.parametrize(
    ("soft", "backlog"), [(64, 128), (1024, 512), (20000, 1024), (resource.RLIM_INFINITY, 1024)]
)
def test_the_accept_queue_is_long_but_not_past_the_descriptors(
    monkeypatch: pytest.MonkeyPatch, soft: int, backlog: int
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (soft, resource.RLIM_INFINITY))
    assert listen_backlog() == backlog
