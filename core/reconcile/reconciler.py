"""The reconciler: every trigger is an intent; one owner for every stack's convergence.

An **intent** asks for some stacks to be deployed (an API deploy, an apply, a webhook, a poll, a
drift redeploy, a swarm secret's new version, the core's start, a reconcile pass). ``submit``
admits it atomically, with no ``await`` between looking at a stack and claiming it:

- a stack with no follow-up waiting gets one in a **new run** (created by this intent);
- a stack that already has a follow-up waiting (a run that has not started it yet) is carried by
  that run: intents that arrive while a stack is busy coalesce into one follow-up, which reads the
  newest desired state when it starts the stack. None is lost, none runs twice;
- a stack being deployed, when nothing it is deployed from changed since its deploy started (no
  apply since, and the intent names no other commit), is carried by that deploy: it already
  brings what the intent asks for.

The intent, and the runs it created with a pending deploy per stack, are recorded in one
transaction before ``submit`` returns (the caller's answer names the run that carries each
stack). ``exclusive`` is for a caller who wants "this exact run or nothing": a stack that is
running or waiting is refused (``Busy``).

A **run** deploys its stacks through the dependency graph (``core/deploy/schedule.py``): tiers in
order, ``after`` and ``wait_for`` respected, a failure skipping exactly its dependents. A stack of
the run waits while an earlier run still deploys it; a dependency being deployed by another run
is waited for, and its failure skips what depends on it here too. Every exit path records an
outcome: a run cancelled because the core stops leaves its deploys ``interrupted`` (shielded);
the next start closes whatever a killed process left open the same way (``close_interrupted``)
and, with ``reconcile = "auto"``, deploys what is not converged (``reconcile_once``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import anyio
import anyio.abc
import anyio.to_thread
import msgspec

from core.deploy.deployer import DeployRef, Prepared, RunContext, StackDeployer
from core.deploy.jobs import JobError
from core.deploy.schedule import (
    DEFAULT_PARALLEL,
    StackFailed,
    StackOutcome,
    Status,
    Turn,
    run_graph,
)
from core.events.bus import EventBus
from core.events.model import DeployFinished, IntentRecorded, Kind
from core.exceptions import CoreError, StoreError
from core.reconcile.convergence import Verdict, due
from core.reconcile.desired import DesiredState
from core.store.deploys import DeployRecords
from core.store.durable import STOP_WRITE, durably
from core.store.intents import IntentLog
from core.updates.redeploy import update_job

log = logging.getLogger(__name__)

SOURCES = (
    "api",
    "apply",
    "webhook",
    "poll",
    "drift",
    "secrets",
    "startup",
    "reconcile",
    "bootstrap",
    "update",
    "procedure",
)


class Refused(CoreError):
    """An intent that cannot be admitted (unknown stacks, the reconciler is not running)."""


class Busy(Refused):
    """``exclusive``: a stack is being deployed or waits for a deploy already."""


class Intent(msgspec.Struct, frozen=True):
    stacks: list[str]
    source: str
    reason: str = ""
    pins: dict[str, str] = msgspec.field(default_factory=dict)  # stack -> commit to deploy
    # An image update (core/updates): stack -> the services whose newer images to pull and
    # bring up ([] : all). Such a deploy pulls first; only those services when every intent the
    # run carries for the stack says so and the stack runs its desired spec (else all).
    pull: dict[str, list[str]] = msgspec.field(default_factory=dict)


class Admission(msgspec.Struct, frozen=True):
    intent: int
    runs: dict[str, int]  # stack -> the run that carries it
    created: list[int]  # the runs this intent started (the others it joined)

    @property
    def run_ids(self) -> list[int]:
        return sorted(set(self.runs.values()))


@dataclass(eq=False)
class _Run:
    id: int
    trigger: str
    source: str
    stacks: frozenset[str]
    intents: list[int] = field(default_factory=list)
    pins: dict[str, str] = field(default_factory=dict)
    ended: dict[str, anyio.Event] = field(default_factory=dict)  # per stack, once resolved
    results: dict[str, str] = field(default_factory=dict)  # per stack: healthy, failed...
    # per stack, once its deploy started: the desired-state generation it was prepared at
    generation: dict[str, int] = field(default_factory=dict)
    pulls: dict[str, frozenset[str] | None] = field(default_factory=dict)  # None: all services
    full: set[str] = field(default_factory=set)  # asked for by an intent that is no update

    def event(self, stack: str) -> anyio.Event:
        return self.ended.setdefault(stack, anyio.Event())


@dataclass(eq=False)
class _Slot:
    """One stack: the run deploying it now, and the one follow-up waiting for it."""

    running: _Run | None = None
    pending: _Run | None = None
    idle: anyio.Event = field(default_factory=anyio.Event)


class Verdicts(Protocol):
    def verdicts(self, only: Collection[str] | None = None) -> dict[str, Verdict]: ...

    def deployable(self) -> list[str]: ...


class Reconciler:
    def __init__(
        self,
        desired: DesiredState,
        deployer: StackDeployer,
        records: DeployRecords,
        intents: IntentLog,
        events: EventBus,
        *,
        parallel: int = DEFAULT_PARALLEL,
    ) -> None:
        self.desired = desired
        self.deployer = deployer
        self.records = records
        self.intents = intents
        self.events = events
        self.parallel = parallel
        self._slots: dict[str, _Slot] = {}
        self._runs: dict[int, _Run] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._next_run = 0
        self._next_intent = 0
        self._generation = 0  # bumped whenever the desired state may have changed (an apply)

    # ----------------------------------------------------------------------------- running

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the runs until cancelled (a cancelled run records its stacks ``interrupted``)."""
        self._next_run = await anyio.to_thread.run_sync(self.records.max_run_id)
        self._next_intent = await anyio.to_thread.run_sync(self.intents.max_id)
        await self.desired.refresh()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    async def desired_changed(self) -> None:
        """The desired state may have changed (an apply): deploys that start from here on are
        new, and a request does not join a deploy that started before."""
        self._generation += 1
        await self.desired.refresh()

    @property
    def running(self) -> bool:
        return self._tg is not None

    def busy(self) -> set[str]:
        """Stacks being deployed now or waiting for a deploy."""
        return {n for n, s in self._slots.items() if s.running is not None or s.pending is not None}

    def deploying(self) -> set[str]:
        """Stacks being deployed now."""
        return {n for n, s in self._slots.items() if s.running is not None}

    def _slot(self, stack: str) -> _Slot:
        slot = self._slots.get(stack)
        if slot is None:
            slot = self._slots[stack] = _Slot()
        return slot

    # ---------------------------------------------------------------------------- admission

    def _admit(
        self, intent_id: int, intent: Intent, exclusive: bool
    ) -> tuple[dict[str, int], list[_Run]]:
        """Claim the stacks (no await here: check and claim are one step)."""
        stacks = sorted(set(intent.stacks))
        if exclusive:
            busy = [
                s
                for s in stacks
                if s in self._slots
                and (self._slots[s].running is not None or self._slots[s].pending is not None)
            ]
            if busy:
                raise Busy(
                    f"already being deployed or waiting to be: {', '.join(busy)}; without"
                    " exclusive the request would join the deploy that waits"
                )
        joining: dict[str, _Run] = {}
        for s in stacks:
            slot = self._slot(s)
            current = slot.running
            if (
                slot.pending is None
                and current is not None
                and current.generation.get(s) == self._generation
                and intent.pins.get(s, current.pins.get(s, "")) == current.pins.get(s, "")
                and s not in intent.pull  # a deploy that started without pulling brings no update
                and (current.pulls.get(s) is None or s in current.full)  # nor one of some services
            ):
                joining[s] = current  # its deploy brings what is asked: carried by it
        fresh = [s for s in stacks if self._slot(s).pending is None and s not in joining]
        created: list[_Run] = []
        if fresh:
            self._next_run += 1
            run = _Run(
                self._next_run,
                intent.reason or f"{intent.source}: {', '.join(stacks)}",
                intent.source,
                frozenset(fresh),
            )
            self._runs[run.id] = run
            created.append(run)
            for s in fresh:
                self._slots[s].pending = run
        carriers: dict[str, int] = {}
        for s in stacks:
            carrier = joining.get(s) or self._slots[s].pending
            assert carrier is not None
            if intent_id not in carrier.intents:
                carrier.intents.append(intent_id)
            if s in intent.pins:
                carrier.pins[s] = intent.pins[s]  # the newest intent's commit wins
            if s in intent.pull:
                had, wanted = carrier.pulls.get(s, frozenset()), intent.pull[s]
                carrier.pulls[s] = None if had is None or not wanted else had | set(wanted)
            else:
                carrier.full.add(s)
            carriers[s] = carrier.id
        return carriers, created

    def _unadmit(self, intent_id: int, carriers: Mapping[str, int], created: list[_Run]) -> None:
        for run_id in set(carriers.values()):
            run = self._runs.get(run_id)
            if run is not None and intent_id in run.intents:
                run.intents.remove(intent_id)
        for run in created:
            if run.intents:
                continue  # another intent joined it meanwhile: it runs for that one
            for s in run.stacks:
                if self._slots[s].pending is run:
                    self._slots[s].pending = None
            self._runs.pop(run.id, None)

    async def submit(self, intent: Intent, *, exclusive: bool = False) -> Admission:
        """Admit and record ``intent``; start the runs it created. Raises ``Refused``,
        ``Busy``, or ``StoreError`` (nothing admitted then)."""
        if self._tg is None:
            raise Refused("the core is starting or stopping; try again")
        if not intent.stacks:
            raise Refused("nothing to deploy")
        unknown = sorted(s for s in set(intent.stacks) if not self.desired.knows(s))
        if unknown:
            await self.desired.refresh()
            unknown = [s for s in unknown if not self.desired.knows(s)]
        if unknown:
            raise Refused(
                f"no stack named {', '.join(repr(s) for s in unknown)} is applied; plan and"
                " apply first"
            )
        self._next_intent += 1
        intent_id = self._next_intent
        carriers, created = self._admit(intent_id, intent, exclusive)
        touched = {
            run_id: [s for s, r in carriers.items() if r == run_id]
            for run_id in set(carriers.values())
        }
        new_runs = [
            (
                run_id,
                self._runs[run_id].trigger,
                self._runs[run_id].source,
                [(s, "") for s in stacks],
            )
            for run_id, stacks in sorted(touched.items())
        ]
        try:
            await anyio.to_thread.run_sync(
                self.intents.record,
                intent_id,
                intent.source,
                intent.reason,
                sorted(set(intent.stacks)),
                intent.pins,
                carriers,
                new_runs,
            )
        except StoreError:
            self._unadmit(intent_id, carriers, created)
            raise
        self.events.publish(
            Kind.INTENT_RECORDED,
            "",
            IntentRecorded(
                intent=intent_id,
                source=intent.source,
                reason=intent.reason,
                stacks=sorted(set(intent.stacks)),
                runs=carriers,
            ),
        )
        tg = self._tg
        for run in created:
            if tg is None:
                break
            tg.start_soon(self._execute, run)
        log.info(
            "intent %s (%s%s): %s",
            intent_id,
            intent.source,
            f": {intent.reason}" if intent.reason else "",
            ", ".join(f"{s} in run {r}" for s, r in sorted(carriers.items())),
        )
        return Admission(intent_id, carriers, [r.id for r in created])

    async def outcomes(self, admission: Admission) -> dict[str, tuple[str, str]]:
        """Wait until every stack of ``admission`` ended in the run that carries it; each one's
        status (healthy, failed, skipped, interrupted) and reason, as recorded."""
        out: dict[str, tuple[str, str]] = {}
        for stack, run_id in sorted(admission.runs.items()):
            run = self._runs.get(run_id)
            if run is not None:
                await run.event(stack).wait()
            deploy_id = await self._deploy_id_of(run_id, stack)
            row = (
                await anyio.to_thread.run_sync(self.records.deploy, deploy_id)
                if deploy_id is not None
                else None
            )
            if row is None:
                out[stack] = (run.results.get(stack, "failed") if run else "failed", "")
            else:
                out[stack] = (str(row["status"]), str(row["reason"]))
        return out

    async def _deploy_id_of(self, run_id: int, stack: str) -> int | None:
        try:
            return await anyio.to_thread.run_sync(self.records.deploy_in_run, run_id, stack)
        except StoreError:
            return None

    # ------------------------------------------------------------------------------ a run

    async def _execute(self, run: _Run) -> None:
        ctx = RunContext()
        status = "failed"
        stopping = False
        outcomes: dict[str, StackOutcome] = {}
        log.info("run %s started (%s): %s", run.id, run.trigger, ", ".join(sorted(run.stacks)))
        try:
            graph = await self.desired.graph(run.stacks)
            missing = sorted(s for s in run.stacks if s not in graph.nodes)
            for name in missing:  # deleted since: nothing to deploy
                await self._close(run, name, "skipped", "no longer in the applied resources")
            targets = [s for s in run.stacks if s in graph.nodes]
            outcomes = await run_graph(
                graph,
                targets,
                partial(self._deploy_one, run, ctx),
                limit=self.parallel,
                on_finished=partial(self._finished, run),
                external=partial(self._external, run),
            )
            ok = all(o.status is Status.HEALTHY for o in outcomes.values()) and not missing
            status = "succeeded" if ok else "failed"
        except anyio.get_cancelled_exc_class():
            stopping = True
            raise
        except ValueError as exc:  # a dependency cycle (the checks report it too)
            log.warning("run %s: %s", run.id, exc)
            for name in run.stacks:
                await self._close(run, name, "failed", str(exc))
        except Exception:
            log.exception("run %s broke", run.id)
        finally:
            with anyio.CancelScope(shield=True) as shield:
                if stopping:
                    shield.deadline = anyio.current_time() + STOP_WRITE
                    status = "interrupted"
                for name in sorted(run.stacks):  # never started: pending no more
                    if name not in run.results:
                        await self._close(
                            run,
                            name,
                            "interrupted" if stopping else "skipped",
                            "the core stopped before it started" if stopping else "not started",
                        )
                for name in run.stacks:
                    slot = self._slots.get(name)
                    if slot is not None and slot.pending is run:
                        slot.pending = None
                self._runs.pop(run.id, None)
                await durably(f"run {run.id}", partial(self.records.finish_run, run.id, status))
                try:
                    await anyio.to_thread.run_sync(
                        self.intents.finish, run.intents, "done" if not stopping else "interrupted"
                    )
                except StoreError as exc:
                    log.warning("run %s: its intents not closed: %s", run.id, exc)
                if not stopping and ctx.secret_servers:
                    await self.deployer.remove_old_secrets(ctx.secret_servers)
        log.info("run %s %s", run.id, status)

    async def _close(self, run: _Run, name: str, status: str, reason: str) -> None:
        """Record a stack of the run that did not deploy (skipped, interrupted, refused)."""
        if name in run.results:
            return
        run.results[name] = status
        run.event(name).set()
        deploy_id = await self._deploy_id(run, name)
        if deploy_id is None:
            return
        ref = DeployRef(run.id, deploy_id, run.trigger)
        self.deployer.publish_finished(ref, name, status, reason)
        await durably(
            f"deploy {deploy_id} ({name} {status})",
            partial(self.records.deploy_finished, deploy_id, status, reason),
        )

    async def _deploy_id(self, run: _Run, name: str) -> int | None:
        try:
            return await anyio.to_thread.run_sync(self.records.deploy_in_run, run.id, name)
        except StoreError as exc:
            log.warning("run %s: %s: %s", run.id, name, exc)
            return None

    async def _deploy_one(self, run: _Run, ctx: RunContext, name: str, turn: Turn) -> None:
        slot = self._slot(name)
        while slot.running is not None and slot.running is not run:
            await slot.idle.wait()  # an earlier run still deploys it
        if slot.pending is run:
            slot.pending = None
        slot.running = run
        run.generation[name] = self._generation
        try:
            deploy_id = await self._deploy_id(run, name)
            if deploy_id is None:
                run.results[name] = "failed"
                raise StackFailed("the core's state cannot record this deploy")
            ref = DeployRef(run.id, deploy_id, run.trigger)
            try:
                prepared = await self.desired.prepare(name, run.pins.get(name, ""))
            except (JobError, CoreError) as exc:
                run.results[name] = "failed"
                self.deployer.publish_finished(ref, name, "failed", str(exc), step="prepare")
                await durably(
                    f"deploy {deploy_id}",
                    partial(
                        self.records.deploy_finished,
                        deploy_id,
                        "failed",
                        str(exc),
                        failed_step="prepare",
                    ),
                )
                raise StackFailed(str(exc)) from exc
            if name in run.pulls:
                prepared = await self._pulling(run, name, prepared)
            try:
                await self.deployer.deploy(ref, prepared, ctx, turn.release)
            except StackFailed:
                run.results[name] = "failed"
                raise
            run.results[name] = "healthy"
        finally:
            run.results.setdefault(name, "interrupted")
            run.event(name).set()
            slot.running = None
            idle, slot.idle = slot.idle, anyio.Event()
            idle.set()

    async def _pulling(self, run: _Run, name: str, prepared: Prepared) -> Prepared:
        """An image update's deploy: pulls, and only the services asked for when that is safe."""
        wanted = run.pulls[name]
        services = frozenset() if wanted is None or name in run.full else wanted
        last = None
        if services:
            try:
                last = await anyio.to_thread.run_sync(self.records.last_finished, name)
            except StoreError as exc:
                log.warning("run %s: %s: the whole stack is updated: %s", run.id, name, exc)
        return update_job(prepared, services, last)

    async def _finished(self, run: _Run, outcome: StackOutcome) -> None:
        if outcome.status is Status.SKIPPED:
            await self._close(run, outcome.name, "skipped", outcome.reason)

    async def _external(self, run: _Run, name: str) -> str | None:
        """A dependency outside this run: wait while another run deploys it (or will)."""
        slot = self._slots.get(name)
        if slot is None:
            return None
        other = slot.running if slot.running not in (None, run) else None
        if other is None and slot.pending not in (None, run):
            other = slot.pending
        if other is None:
            return None
        await other.event(name).wait()
        result = other.results.get(name, "")
        if result == "healthy":
            return None
        return f"{name} {result or 'not deployed'} (run {other.id})"

    # ----------------------------------------------------------------------------- startup

    async def close_interrupted(self, reason: str) -> int:
        """Close what an earlier process left open (before any run of this one starts):
        ``interrupted``, with a ``deploy.finished`` event each. Returns how many."""
        closed = await durably(
            "closing the deploys left open", partial(self.records.close_open, reason)
        )
        for deploy_id, run_id, stack, _before in closed:
            self.events.publish(
                Kind.DEPLOY_FINISHED,
                f"stack:{stack}",
                DeployFinished(
                    run=run_id,
                    deploy=deploy_id,
                    stack=stack,
                    status="interrupted",
                    message=reason,
                    seconds=0.0,
                ),
            )
        if closed:
            log.warning(
                "closed %s deploy(s) an earlier core left open: %s",
                len(closed),
                ", ".join(sorted({c[2] for c in closed})),
            )
        return len(closed)

    async def reconcile_once(
        self, verdicts: Verdicts, source: str = "reconcile"
    ) -> Admission | None:
        """Deploy every stack that is due (not converged, not busy, not in its backoff):
        one intent, in tier order. Returns its admission, or None when all is well."""
        now = time.time()
        found = await anyio.to_thread.run_sync(verdicts.verdicts)
        managed = set(await anyio.to_thread.run_sync(verdicts.deployable))
        busy = self.busy()
        stacks = sorted(
            name
            for name, v in found.items()
            if name in managed and name not in busy and due(v, now)
        )
        if not stacks:
            return None
        reasons = {n: found[n].reasons[0] for n in stacks if found[n].reasons}
        why = "; ".join(f"{n}: {r}" for n, r in list(reasons.items())[:5])
        if len(reasons) > 5:
            why += f"; and {len(reasons) - 5} more"
        return await self.submit(Intent(stacks, source, f"{source}: {why}"))
