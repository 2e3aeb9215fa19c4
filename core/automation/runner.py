"""Running procedures: the driver of :mod:`core.automation.machine`.

``start(name, source, reason)`` admits a run (one run of a procedure at a time, as Komodo's
action state allows: a second is refused while the first runs), records it before it answers,
and runs it in the runner's task group; ``run_to_end`` also waits for its end (a
``RunProcedure`` execution). Each stage's executions are typed (:mod:`.executions`), batches
expanded against the applied resources (:mod:`.patterns`), and each one done by
:class:`core.automation.steps.Steps`, all of a stage at once.

Every step and line of output is recorded (``procedure_runs``, ``procedure_steps``,
``procedure_output``) and published as it happens (``procedure.*`` events), like a deploy's.
A run cut off because the core stops is recorded ``interrupted`` (shielded); one an earlier
process left open is closed the same way at start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import msgspec

from core.automation import executions as ex
from core.automation.machine import Ended, Expand, Launch, ProcedureMachine, StageEnded
from core.automation.patterns import PatternError, matching
from core.automation.records import ProcedureRecords
from core.automation.steps import Say, StepFailed, Steps
from core.events.bus import EventBus
from core.events.model import (
    Kind,
    ProcedureFinished,
    ProcedureOutput,
    ProcedureStage,
    ProcedureStarted,
    ProcedureStep,
)
from core.exceptions import CoreError, StoreError
from core.resources.models import ProcedureConfig
from core.store import Store
from core.store.durable import STOP_WRITE, durably

log = logging.getLogger(__name__)

MAX_OUTPUT_LINE = 4000
FailureHook = Callable[[str, int, str], Awaitable[None]]


class ProcedureRefused(CoreError):
    """A run that cannot start (no such procedure, it is running, the core is stopping)."""


class ProcedureBusy(ProcedureRefused):
    """The procedure is running already."""


@dataclass(eq=False)
class _Run:
    id: int
    procedure: str
    config: ProcedureConfig
    source: str
    reason: str
    parent: int | None
    started: float = field(default_factory=time.monotonic)
    done: anyio.Event = field(default_factory=anyio.Event)
    status: str = ""
    message: str = ""
    seq: int = 0  # steps
    out: int = 0  # output lines
    stage_started: dict[int, float] = field(default_factory=dict)


class ProcedureRunner:
    def __init__(
        self,
        store: Store,
        records: ProcedureRecords,
        events: EventBus,
        steps: Steps,
    ) -> None:
        self.store = store
        self.records = records
        self.events = events
        self.steps = steps
        self._tg: anyio.abc.TaskGroup | None = None
        self._running: dict[str, _Run] = {}
        self._next = 0
        self._lock = anyio.Lock()
        # called when a run fails: (procedure, run id, message); alerts may hang off it
        self.on_failed: FailureHook | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the runs until cancelled; first close what an earlier process left open."""
        closed = await anyio.to_thread.run_sync(
            self.records.close_open, "the core stopped before the procedure ended"
        )
        for row in closed:
            self.events.publish(
                Kind.PROCEDURE_FINISHED,
                f"procedure:{row.procedure}",
                ProcedureFinished(
                    run=row.id,
                    procedure=row.procedure,
                    status="interrupted",
                    message="the core stopped before the procedure ended",
                    seconds=0.0,
                ),
            )
        self._next = await anyio.to_thread.run_sync(self.records.max_run_id)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    def running(self) -> dict[str, int]:
        """Procedure → the id of its run in progress."""
        return {name: run.id for name, run in self._running.items()}

    async def procedures(self) -> dict[str, ProcedureConfig]:
        stored = await anyio.to_thread.run_sync(self.store.resources)
        out = {}
        for (kind, name), res in stored.items():
            if kind != "procedure":
                continue
            try:
                out[name] = msgspec.convert(res.config.get("config", {}), ProcedureConfig)
            except msgspec.ValidationError as exc:
                log.warning("stored procedure %s no longer fits its model: %s", name, exc)
        return out

    async def start(
        self, name: str, source: str, reason: str = "", parent: int | None = None
    ) -> int:
        """Admit and record a run; it runs in the background. Raises :class:`ProcedureRefused`
        (:class:`ProcedureBusy` while the procedure runs) or ``StoreError``."""
        return (await self._admit(name, source, reason, parent)).id

    async def run_to_end(
        self, name: str, source: str, reason: str = "", parent: int | None = None
    ) -> tuple[int, str, str]:
        """Start a run and wait for its end: ``(run id, status, message)``."""
        run = await self._admit(name, source, reason, parent)
        await run.done.wait()
        return run.id, run.status, run.message

    async def _admit(self, name: str, source: str, reason: str, parent: int | None) -> _Run:
        tg = self._tg
        if tg is None:
            raise ProcedureRefused("the core is starting or stopping; try again")
        procedures = await self.procedures()
        config = procedures.get(name)
        if config is None:
            raise ProcedureRefused(f"no procedure named {name!r} is applied; plan and apply first")
        async with self._lock:
            busy = self._running.get(name)
            if busy is not None:
                raise ProcedureBusy(f"procedure {name!r} is running (run {busy.id})")
            self._next += 1
            run = _Run(self._next, name, config, source, reason or source, parent)
            try:
                await anyio.to_thread.run_sync(
                    self.records.start_run, run.id, name, source, run.reason, parent
                )
            except StoreError:
                self._next -= 1
                raise
            self._running[name] = run
        self.events.publish(
            Kind.PROCEDURE_STARTED,
            f"procedure:{name}",
            ProcedureStarted(
                run=run.id,
                procedure=name,
                source=source,
                reason=run.reason,
                stages=[s.name for s in config.stages],
                parent=parent,
            ),
        )
        log.info("procedure %s: run %s started (%s)", name, run.id, run.reason)
        tg.start_soon(self._execute, run)
        return run

    # ------------------------------------------------------------------------------ a run

    async def _say(self, run: _Run, text: str) -> None:
        text = text if len(text) <= MAX_OUTPUT_LINE else text[:MAX_OUTPUT_LINE] + "..."
        run.out += 1
        seq = run.out
        self.events.publish(
            Kind.PROCEDURE_OUTPUT,
            f"procedure:{run.procedure}",
            ProcedureOutput(run=run.id, procedure=run.procedure, seq=seq, text=text),
        )
        try:
            await anyio.to_thread.run_sync(
                self.records.add_output, run.id, [(seq, time.time(), text)]
            )
        except StoreError as exc:
            log.warning("procedure %s run %s: output not recorded: %s", run.procedure, run.id, exc)

    async def _execute(self, run: _Run) -> None:
        machine: ProcedureMachine[ex.Step | ex.ReadPast] = ProcedureMachine(
            [(s.name or f"Stage {i + 1}", s.enabled) for i, s in enumerate(run.config.stages)]
        )
        stopping = False
        try:
            async with anyio.create_task_group() as tg:
                await self._act(run, machine, tg, machine.start())
        except anyio.get_cancelled_exc_class():
            stopping = True
            raise
        except Exception as exc:
            log.exception("procedure %s run %s broke", run.procedure, run.id)
            run.status, run.message = "failed", f"internal error: {exc}"
        finally:
            with anyio.CancelScope(shield=True) as shield:
                if stopping:
                    shield.deadline = anyio.current_time() + STOP_WRITE
                    run.status = "interrupted"
                    run.message = "the core stopped before the procedure ended"
                await self._finish(run)

    async def _finish(self, run: _Run) -> None:
        status = run.status or "failed"
        seconds = round(time.monotonic() - run.started, 3)
        try:  # a stopping core's deadline may end the write: the run is closed in memory anyway
            await durably(
                f"procedure {run.procedure} run {run.id}",
                partial(self.records.finish_run, run.id, status, run.message),
            )
        finally:
            self.events.publish(
                Kind.PROCEDURE_FINISHED,
                f"procedure:{run.procedure}",
                ProcedureFinished(
                    run=run.id,
                    procedure=run.procedure,
                    status=status,
                    message=run.message,
                    seconds=seconds,
                ),
            )
            if self._running.get(run.procedure) is run:
                del self._running[run.procedure]
            run.status = status
            run.done.set()
            log.info(
                "procedure %s: run %s %s%s",
                run.procedure,
                run.id,
                status,
                f": {run.message}" if run.message else "",
            )
        if status == "failed" and self.on_failed is not None:
            try:
                await self.on_failed(run.procedure, run.id, run.message)
            except Exception:
                log.exception("procedure %s: the failure hook failed", run.procedure)

    async def _act(
        self,
        run: _Run,
        machine: ProcedureMachine[ex.Step | ex.ReadPast],
        tg: anyio.abc.TaskGroup,
        actions: list[Any],
    ) -> None:
        """Do what the machine asks, in order (feeding back what is known at once)."""
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            match action:
                case Expand(stage=index):
                    stage = run.config.stages[index]
                    name = machine.stages[index][0]
                    run.stage_started[index] = time.monotonic()
                    self._stage_event(run, index, name, "started")
                    await self._say(run, f"Executing stage: '{name}'")
                    try:
                        expanded = await self._expand(run, stage.executions)
                    except (CoreError, ex.ExecutionError) as exc:
                        queue.extend(machine.expand_failed(index, str(exc)))
                        continue
                    queue.extend(machine.expanded(index, expanded))
                case Launch(stage=index, index=position, execution=execution):
                    run.seq += 1
                    tg.start_soon(
                        self._launch, run, machine, tg, index, position, execution, run.seq
                    )
                case StageEnded(stage=index, ok=ok, message=message):
                    name = machine.stages[index][0]
                    took = time.monotonic() - run.stage_started.get(index, time.monotonic())
                    self._stage_event(run, index, name, "ok" if ok else "failed", message, took)
                    if ok:
                        await self._say(run, f"Finished stage '{name}' in {took:.2f}s")
                    else:
                        await self._say(run, f"Failed stage '{name}' after {took:.2f}s: {message}")
                case Ended(status=status, message=message):
                    run.status, run.message = status, message

    async def _expand(self, run: _Run, executions: list[Any]) -> list[ex.Step | ex.ReadPast]:
        """The enabled executions of a stage, typed, each batch expanded into one per match
        (Komodo's ``extend_batch_exection``)."""
        out: list[ex.Step | ex.ReadPast] = []
        for item in executions:
            if not item.enabled:
                continue
            step = ex.parse(item.execution)
            match step:
                case ex.BatchDeployStack(pattern=p):
                    out += [ex.DeployStack(s) for s in await self._match(p, "stack")]
                case ex.BatchDeployStackIfChanged(pattern=p):
                    out += [ex.DeployStackIfChanged(s) for s in await self._match(p, "stack")]
                case ex.BatchPullStack(pattern=p):
                    out += [ex.PullStack(s) for s in await self._match(p, "stack")]
                case ex.BatchDestroyStack(pattern=p):
                    out += [ex.DestroyStack(s) for s in await self._match(p, "stack")]
                case ex.BatchPullRepo(pattern=p) | ex.BatchCloneRepo(pattern=p):
                    out += [ex.PullRepo(r) for r in await self._match(p, "repo")]
                case ex.BatchRunProcedure(pattern=p):
                    out += [ex.RunProcedure(r) for r in await self._match(p, "procedure")]
                case _:
                    out.append(step)
        return out

    async def _match(self, pattern: str, kind: str) -> list[str]:
        names = await self.steps.names(kind)
        try:
            return matching(pattern, names)
        except PatternError as exc:
            raise PatternError(f"pattern {pattern!r}: {exc}") from exc

    def _stage_event(
        self, run: _Run, index: int, name: str, state: str, message: str = "", took: float = 0.0
    ) -> None:
        self.events.publish(
            Kind.PROCEDURE_STAGE,
            f"procedure:{run.procedure}",
            ProcedureStage(
                run=run.id,
                procedure=run.procedure,
                stage=index,
                name=name,
                state=state,
                message=message,
                seconds=round(took, 3),
            ),
        )

    async def _launch(
        self,
        run: _Run,
        machine: ProcedureMachine[ex.Step | ex.ReadPast],
        tg: anyio.abc.TaskGroup,
        stage: int,
        position: int,
        execution: ex.Step | ex.ReadPast,
        seq: int,
    ) -> None:
        label = execution.describe()
        stage_name = machine.stages[stage][0]
        started = time.monotonic()

        def event(state: str, message: str = "", took: float = 0.0) -> None:
            self.events.publish(
                Kind.PROCEDURE_STEP,
                f"procedure:{run.procedure}",
                ProcedureStep(
                    run=run.id,
                    procedure=run.procedure,
                    seq=seq,
                    stage=stage,
                    execution=label,
                    state=state,
                    message=message,
                    seconds=round(took, 3),
                ),
            )

        try:
            await anyio.to_thread.run_sync(
                self.records.step_started, run.id, seq, stage, stage_name, label
            )
        except StoreError as exc:
            log.warning("procedure %s run %s: step not recorded: %s", run.procedure, run.id, exc)
        event("started")
        await self._say(run, f"Executing: {label}")
        ok, status, message = True, "ok", ""
        say: Say = partial(self._say, run)
        try:
            match execution:
                case ex.ReadPast(type=kind, why=why):
                    status, message = "skipped", f"{kind} is read past: {why}"
                    await self._say(run, f"WARNING: {message}")
                case ex.RunProcedure(procedure=child):
                    await self._run_child(run, child, say)
                case _:
                    await self.steps.run(
                        execution, f"procedure {run.procedure} (run {run.id})", say
                    )
        except (StepFailed, CoreError) as exc:
            ok, status, message = False, "failed", str(exc)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True) as shield:
                shield.deadline = anyio.current_time() + STOP_WRITE
                await self._step_finished(run, seq, "interrupted", "the core stopped")
            raise
        except Exception as exc:  # a bug: this execution fails, the procedure says so
            log.exception("procedure %s run %s: %s broke", run.procedure, run.id, label)
            ok, status, message = False, "failed", f"internal error: {exc}"
        took = time.monotonic() - started
        await self._step_finished(run, seq, status, message)
        event(status, message, took)
        if ok:
            await self._say(run, f"Finished {label} in {took:.2f}s")
        else:
            await self._say(run, f"ERROR: Failed on {label}: {message}")
        await self._act(run, machine, tg, machine.finished(stage, position, ok, message))

    async def _step_finished(self, run: _Run, seq: int, status: str, message: str) -> None:
        await durably(
            f"procedure {run.procedure} run {run.id} step {seq}",
            partial(self.records.step_finished, run.id, seq, status, message),
        )

    async def _run_child(self, run: _Run, child: str, say: Say) -> None:
        """``RunProcedure``: Komodo refuses a procedure that runs itself; a child that is
        running already (a cycle through others) is refused as busy."""
        if child == run.procedure:
            raise StepFailed("Self referential procedure detected")
        try:
            child_id, status, message = await self.run_to_end(
                child, "procedure", f"procedure {run.procedure} (run {run.id})", run.id
            )
        except ProcedureRefused as exc:
            raise StepFailed(str(exc)) from exc
        if status != "succeeded":
            raise StepFailed(f"procedure {child} (run {child_id}) {status}: {message}")
        await say(f"procedure {child}: run {child_id} succeeded")
