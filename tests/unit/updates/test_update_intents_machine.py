"""Image update intents in the reconciler, as a Hypothesis state machine: update intents (some
services, or all) and plain ones for random stacks arrive while deploys are held open and end
healthy or failed. Deploys are a stand-in (no socket, no engine); the store is a real SQLite
file. Checked for every deploy that started:

- it pulls exactly when an intent it carries for the stack is an update;
- it brings up only some services exactly when every intent it carries for the stack is an
  update naming services, and the stack's last finished deploy was healthy at the spec and
  commit it deploys (core/updates/redeploy.py); those services are the union of what the
  intents named; otherwise the whole stack;
- an update intent is never carried by a deploy that had already started (it would not pull);
- and the reconciler's own rules still hold (never two deploys of a stack at once).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant, rule

from core.deploy.deployer import DeployRef, Prepared
from core.deploy.jobs import JobPlan
from core.deploy.stack import StackJob
from core.reconcile.reconciler import Intent
from core.resources.variables import Values
from protocol.messages import DeployMode
from tests.unit.deploy import test_reconciler_machine as base

STACKS = base.STACKS
SERVICES = ("app", "db", "web")


class Desired(base.Desired):
    async def prepare(self, stack: str, pin: str = "") -> Prepared:
        job = StackJob(name=stack, mode=DeployMode.COMPOSE, server="s", repo_url="", commit="C")
        return Prepared(JobPlan(job, None, ("s",)), job, Values(), "S")


class RecordingDeployer(base.HeldDeployer):
    """Keeps what each deploy was asked to do, and the stack's last finished deploy then."""

    def __init__(self, records: Any) -> None:
        super().__init__(records)
        self.jobs: dict[tuple[int, str], tuple[bool, tuple[str, ...], Any]] = {}

    async def _begin(self, ref: DeployRef, prepared: Prepared) -> str:
        job = prepared.job
        last = await anyio.to_thread.run_sync(self.records.last_finished, job.name)
        self.jobs[(ref.run_id, job.name)] = (job.pull, job.services, last)
        return job.name

    async def _started(self, ref: DeployRef, prepared: Prepared) -> None:
        await anyio.to_thread.run_sync(
            self.records.deploy_started,
            ref.deploy_id,
            1,
            "s",
            prepared.spec,
            prepared.job.commit,
        )

    async def _end(self, ref: DeployRef, prepared: Prepared, ok: bool) -> str:
        commit = prepared.job.commit
        await anyio.to_thread.run_sync(
            lambda: self.records.deploy_finished(
                ref.deploy_id,
                "healthy" if ok else "failed",
                "",
                commit,
                spec=prepared.spec if ok else "",
            )
        )
        return commit


class UpdateIntentMachine(base.ReconcilerMachine):
    def __init__(self) -> None:
        super().__init__()
        self.deployer = RecordingDeployer(self.records)
        self.reconciler.deployer = self.deployer  # type: ignore[assignment]
        self.reconciler.desired = Desired()  # type: ignore[assignment]
        # intent -> its stacks' pull (None: not an update), and the runs carrying them
        self.intents: list[tuple[dict[str, list[str] | None], dict[str, int], set[str]]] = []

    @rule(
        stacks=st.lists(st.sampled_from(STACKS), min_size=1, max_size=3, unique=True),
        services=st.lists(st.sampled_from(SERVICES), max_size=2, unique=True),
        update=st.booleans(),
    )
    def submit_intent(self, stacks: list[str], services: list[str], update: bool) -> None:
        pull = {s: services for s in stacks} if update else {}
        running = {s for s in stacks if s in self.deployer.in_flight}
        started = {(r, s) for r, s in self.deployer.deploys}
        admission = self.portal.call(
            self.reconciler.submit, Intent(stacks, "update" if update else "api", "t", pull=pull)
        )
        if update:  # never carried by a deploy already under way
            for s in running:
                assert (admission.runs[s], s) not in started, (s, admission.runs[s])
        self.intents.append(
            ({s: (services if update else None) for s in stacks}, dict(admission.runs), running)
        )
        self.created_runs.update(admission.created)
        self.settle()

    def settle(self) -> None:
        """Until the deploys stop moving (three quiet looks in a row): what rule may run next
        must not depend on how loaded the machine is."""
        quiet, last = 0, None
        for _ in range(300):
            self.portal.call(anyio.sleep, 0.005)
            now = (
                len(self.deployer.deploys),
                sorted(self.deployer.in_flight),
                sorted(self.reconciler.busy()),
            )
            quiet = quiet + 1 if now == last else 0
            last = now
            if quiet >= 3:
                return

    def submit(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Not a rule here: every intent goes through submit_intent (which records it)."""
        raise AssertionError("not used")

    @invariant()
    def each_deploy_did_what_its_intents_asked(self) -> None:
        for (run, stack), (pull, services, last) in self.deployer.jobs.items():
            asked = [p[stack] for p, runs, _ in self.intents if runs.get(stack) == run]
            if not asked:
                continue  # the answer naming this run is not recorded yet
            updates = [a for a in asked if a is not None]
            assert pull == bool(updates), (run, stack, asked)
            some = bool(updates) and len(updates) == len(asked) and all(updates)
            safe = last is not None and last == ("healthy", "S", "C")
            want = tuple(sorted({s for a in updates for s in a})) if some and safe else ()
            assert services == want, (run, stack, asked, last, services)

    @invariant()
    def counts(self) -> None:
        assert all(n == 1 for n in Counter(self.deployer.deploys).values())


UpdateIntentMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestUpdateIntents = UpdateIntentMachine.TestCase
