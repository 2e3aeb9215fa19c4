"""The reconciler's admission and runs as a state machine, driven by Hypothesis: intents for
random stacks (exclusive or not) arrive while deploys are held open and finished one by one.

The deploys themselves are a stand-in (pure logic: no socket, no engine); the store is a real
SQLite file. Checked after every step and at the end:

- a stack is never deployed by two runs at once;
- a stack has at most one follow-up run waiting;
- every admitted intent is carried: each of its stacks is deployed (or closed) by the run its
  answer named; none is lost;
- none runs twice: a run deploys each of its stacks at most once, and intents that arrive while
  a stack waits join the run that waits (they make no run of their own);
- at the end nothing is left open in the store.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from core.dependency_graph import Graph
from core.deploy.deployer import DeployRef, Prepared, RunContext
from core.deploy.schedule import StackFailed
from core.events.bus import EventBus
from core.reconcile.reconciler import Busy, Intent, Reconciler
from core.store import Store
from core.store.deploys import DeployRecords
from core.store.intents import IntentLog

STACKS = ("a", "b", "c", "d")


class Desired:
    """Every stack exists; ``b`` waits for ``a`` (an ``after``)."""

    def knows(self, stack: str) -> bool:
        return stack in STACKS

    async def refresh(self) -> None:
        return None

    async def graph(self, targets: object = ()) -> Graph:
        return Graph({"a": [], "b": ["a"], "c": [], "d": []})

    async def prepare(self, stack: str, pin: str = "") -> Prepared:
        return Prepared(plan=None, job=stack, masker=None)  # type: ignore[arg-type]


class HeldDeployer:
    """Deploys that run until the test finishes them."""

    def __init__(self, records: DeployRecords) -> None:
        self.records = records
        self.in_flight: dict[str, tuple[anyio.Event, list[bool]]] = {}
        self.deploys: list[tuple[int, str]] = []  # (run, stack), in start order
        self.overlaps = 0

    async def deploy(
        self,
        ref: DeployRef,
        prepared: Prepared,
        ctx: RunContext,
        waiting: Callable[[], None] | None = None,
    ) -> str:
        stack = await self._begin(ref, prepared)
        if stack in self.in_flight:
            self.overlaps += 1
        done, outcome = anyio.Event(), [True]
        self.in_flight[stack] = (done, outcome)
        self.deploys.append((ref.run_id, stack))
        await self._started(ref, prepared)
        try:
            await done.wait()
        finally:
            del self.in_flight[stack]
        commit = await self._end(ref, prepared, outcome[0])
        if not outcome[0]:
            raise StackFailed(f"{stack} failed")
        return commit

    async def _begin(self, ref: DeployRef, prepared: Prepared) -> str:
        """The stack's name (what a subclass notes of the deploy, before it is in flight)."""
        return str(prepared.job)

    async def _started(self, ref: DeployRef, prepared: Prepared) -> None:
        await anyio.to_thread.run_sync(self.records.deploy_started, ref.deploy_id, 1, "s")

    async def _end(self, ref: DeployRef, prepared: Prepared, ok: bool) -> str:
        """Record its end; the commit deployed."""
        status = "healthy" if ok else "failed"
        await anyio.to_thread.run_sync(self.records.deploy_finished, ref.deploy_id, status, "")
        return "c0ffee"

    def publish_finished(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def remove_old_secrets(self, servers: set[str]) -> None:
        return None


class ReconcilerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.store = Store.open(Path(self.tmp.name))
        self.records = DeployRecords(self.store)
        self.deployer = HeldDeployer(self.records)
        self.reconciler = Reconciler(
            Desired(),  # type: ignore[arg-type]
            self.deployer,  # type: ignore[arg-type]
            self.records,
            IntentLog(self.store),
            EventBus(None),
        )
        self.portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
        self.portal = self.portal_cm.__enter__()
        self.task, _ = self.portal.start_task(self.reconciler.run)
        self.admitted: list[tuple[int, dict[str, int], int]] = []  # intent, runs, deploys then
        self.created_runs: set[int] = set()

    def settle(self) -> None:
        self.portal.call(anyio.sleep, 0.01)

    @rule(
        stacks=st.lists(st.sampled_from(STACKS), min_size=1, max_size=3, unique=True),
        exclusive=st.booleans(),
    )
    def submit(self, stacks: list[str], exclusive: bool) -> None:
        before = len(self.deployer.deploys)
        busy = self.reconciler.busy()

        async def go() -> Any:
            try:
                return await self.reconciler.submit(
                    Intent(stacks, "api", "test"), exclusive=exclusive
                )
            except Busy:
                return None

        admission = self.portal.call(go)
        if admission is None:
            assert exclusive and set(stacks) & busy
            return
        self.admitted.append((admission.intent, dict(admission.runs), before))
        self.created_runs.update(admission.created)
        assert len(admission.created) <= 1  # one intent makes at most one run
        self.settle()

    @precondition(lambda self: bool(self.deployer.in_flight))
    @rule(data=st.data(), ok=st.booleans())
    def finish(self, data: st.DataObject, ok: bool) -> None:
        stack = data.draw(st.sampled_from(sorted(self.deployer.in_flight)))
        done, outcome = self.deployer.in_flight[stack]
        outcome[0] = ok
        self.portal.call(_set, done)
        self.settle()

    @invariant()
    def never_two_at_once(self) -> None:
        assert self.deployer.overlaps == 0

    @invariant()
    def one_follow_up_at_most(self) -> None:
        pending = Counter(
            name for name, slot in self.reconciler._slots.items() if slot.pending is not None
        )
        assert all(n == 1 for n in pending.values())

    @invariant()
    def no_run_deploys_a_stack_twice(self) -> None:
        counts = Counter(self.deployer.deploys)
        assert all(n == 1 for n in counts.values()), counts

    def teardown(self) -> None:
        try:
            for _ in range(200):  # finish everything that runs or waits
                if not self.deployer.in_flight and not self.reconciler.busy():
                    break
                for done, _ in list(self.deployer.in_flight.values()):
                    self.portal.call(_set, done)
                self.settle()
            assert not self.reconciler.busy()
            started = self.deployer.deploys
            for _intent, runs, _before in self.admitted:
                for stack, run in runs.items():
                    # carried: the named run deployed the stack (one that started after the
                    # intent arrived, or was in flight then with nothing changed since), or
                    # closed it (skipped behind a failed dependency)
                    if (run, stack) not in started:
                        row = self.records.deploy_in_run(run, stack)
                        assert row is not None, (run, stack)
                        assert self.records.deploy(row)["status"] == "skipped", (run, stack)
            runs_seen = {r for r, _ in started}
            assert runs_seen <= self.created_runs
            with self.store.read() as db:
                left = db.execute(
                    "SELECT COUNT(*) FROM deploys WHERE status IN ('pending', 'running')"
                ).fetchone()[0]
                assert left == 0
        finally:
            self.task.cancel()
            self.portal_cm.__exit__(None, None, None)
            self.store.close()
            self.tmp.cleanup()


async def _set(event: anyio.Event) -> None:
    event.set()


ReconcilerMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_reconciler = ReconcilerMachine.TestCase
