"""One stack's deploy on its periphery: its lock and fence, the swarm secrets it needs, its
``[[repo]]``'s clone, the steps, and every step, output line and outcome recorded.

``StackDeployer.deploy`` is called by the reconciler (core/reconcile/reconciler.py), which owns
*when* a stack deploys; this module owns *how*. Output is masked (core secrets and secret
variables never reach the store) and kept with the deploy, in order. Every exit records an
outcome: ``healthy``, ``failed`` (with the step, the reason and the failing command's last output
lines), or ``interrupted`` when the core stops in the middle (shielded, so a cancellation still
writes it); a write that fails (a full disk) is retried until it lands (``durably``).
"""

from __future__ import annotations

import logging
import secrets as pysecrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import anyio.to_thread

from core.config import CoreConfig
from core.deploy.jobs import JobPlan
from core.deploy.masking import Masker, OutputMasker
from core.deploy.schedule import StackFailed
from core.deploy.secrets import (
    current_versions,
    deploy_env,
    ensure_versions,
    remove_unused,
    secret_env,
    wanted_versions,
)
from core.deploy.stack import StackJob, deploy_stack, run_step
from core.events.bus import EventBus
from core.events.model import DeployFinished, DeployOutput, DeployStarted, DeployStep, Kind
from core.exceptions import PeripheryUnavailable, SecretsUnavailable, StoreError
from core.pool import PeripheryPool
from core.reconcile.convergence import retry_delay
from core.resources.variables import Values
from core.store.deploys import DeployRecords, OutputLine, StackLocked
from core.store.durable import STOP_WRITE, durably
from protocol.exceptions import ChannelError
from protocol.messages import (
    ComposeDown,
    DeployMode,
    Fence,
    Health,
    HealthReport,
    RepoSync,
    Stream,
    SwarmRemove,
)
from protocol.transport import CoreChannel

log = logging.getLogger(__name__)

CHANNEL_WAIT = 15.0  # how long a deploy waits for its server's channel
FLUSH_LINES = 64  # output chunks buffered per deploy before they are written
TAIL_LINES = 12  # output lines kept with a failed deploy's reason
PENDING_LIMIT = 10_000  # output lines held in memory while the store cannot take them



@dataclass(frozen=True)
class Prepared:
    """A stack's deploy, resolved from the desired state when it starts (the newest wins)."""

    plan: JobPlan
    job: StackJob  # commit resolved; server picked when it starts
    masker: Values
    spec: str = ""
    form: dict[str, Any] | None = None


@dataclass
class DeployRef:
    """Where a stack's deploy is recorded and what it is part of."""

    run_id: int
    deploy_id: int
    trigger: str


@dataclass
class _RepoState:
    """One repo's sync within a run: done once, by the first stack that needs it."""

    started: bool = False
    done: anyio.Event = field(default_factory=anyio.Event)
    error: str = ""


@dataclass
class RunContext:
    """What the stacks of one run share: repo syncs done once, the servers whose swarm secrets
    the run made sure of (old versions are removed after the run)."""

    repos: dict[str, _RepoState] = field(default_factory=dict)
    secret_servers: set[str] = field(default_factory=set)


class _Recorder:
    """Steps and output of one deploy: masked, batched, kept in order; the last lines of each
    step are kept for the reason of a failure."""

    def __init__(self, deployer: StackDeployer, ref: DeployRef, name: str, masker: Masker) -> None:
        self.deployer = deployer
        self.ref = ref
        self.name = name
        self.masker = masker
        self._streams: dict[tuple[str, str], OutputMasker] = {}  # (step, stream) -> masker
        self.seq = 0
        self.pending: list[OutputLine] = []
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.failed_step = ""
        self._dropped = 0

    async def step_started(self, job: StackJob, step: str) -> None:
        self.tail.clear()
        self.deployer.events.publish(
            Kind.DEPLOY_STEP,
            f"stack:{self.name}",
            DeployStep(deploy=self.ref.deploy_id, stack=self.name, step=step, state="started"),
        )
        await self._write(self.deployer.records.step_started, self.ref.deploy_id, step)

    async def output(self, job: StackJob, step: str, stream: Stream, data: bytes) -> None:
        name = "stderr" if stream is Stream.STDERR else "stdout"
        masker = self._streams.get((step, name))
        if masker is None:
            masker = self._streams[(step, name)] = self.masker.output()
        # Masked on the stream: a secret cut between chunks (the periphery's 64 KiB line cut,
        # a PEM key's lines) is held back until it can be masked whole.
        text = masker.feed(data)
        if text:
            await self._record(step, name, text)

    async def end_streams(self, step: str | None = None) -> None:
        """Release what the maskers of ``step`` (of every step: None) still hold."""
        for key in [k for k in self._streams if step is None or k[0] == step]:
            text = self._streams.pop(key).end()
            if text:
                await self._record(key[0], key[1], text)

    async def _record(self, step: str, name: str, text: str) -> None:
        for line in text.splitlines():
            if line.strip():
                self.tail.append(line)
        if len(self.pending) < PENDING_LIMIT:
            self.pending.append(OutputLine(self.seq, step, name, time.time(), text))
        else:
            self._dropped += 1
        self.deployer.events.publish(
            Kind.DEPLOY_OUTPUT,
            f"stack:{self.name}",
            DeployOutput(
                deploy=self.ref.deploy_id,
                stack=self.name,
                step=step,
                stream=name,
                seq=self.seq,
                text=text,
            ),
        )
        self.seq += 1
        if len(self.pending) >= FLUSH_LINES:
            await self.flush()

    async def flush(self) -> None:
        if not self.pending:
            return
        lines = self.pending
        try:
            await anyio.to_thread.run_sync(
                self.deployer.records.add_output, self.ref.deploy_id, lines
            )
        except StoreError as exc:  # kept in memory (bounded) and written with the next flush
            log.warning("deploy %s: output not recorded yet: %s", self.ref.deploy_id, exc)
            return
        self.pending = [x for x in self.pending if x.seq > lines[-1].seq]
        if self._dropped:
            log.warning(
                "deploy %s: %s output line(s) dropped while the store could not take them",
                self.ref.deploy_id,
                self._dropped,
            )
            self._dropped = 0

    async def step_finished(
        self, job: StackJob, step: str, ok: bool, message: str, seconds: float
    ) -> None:
        await self.end_streams(step)
        await self.flush()
        masked = self.masker.mask(message)
        if not ok:
            self.failed_step = step
        self.deployer.events.publish(
            Kind.DEPLOY_STEP,
            f"stack:{self.name}",
            DeployStep(
                deploy=self.ref.deploy_id,
                stack=self.name,
                step=step,
                state="ok" if ok else "failed",
                message=masked,
                seconds=round(seconds, 3),
            ),
        )
        await self._write(self.deployer.records.step_finished, self.ref.deploy_id, step, ok, masked)

    async def _write(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            await anyio.to_thread.run_sync(fn, *args)
        except StoreError as exc:  # a step's record is not worth stopping the deploy for
            log.warning("deploy %s: a step was not recorded: %s", self.ref.deploy_id, exc)

    def tail_text(self) -> str:
        return "\n".join(self.tail)


def deploy_masker(values: Values, job: StackJob) -> Masker:
    """What a deploy's output, steps and reasons are masked with: the core's secrets and secret
    variables, and the git and registry tokens the deploy carries."""
    tokens = [c.token for c in (job.credentials, job.registry) if c is not None]
    return Masker([*values.secret_values(), *tokens])


def _at_once(failures: int) -> float:
    return 0.0


class StackDeployer:
    def __init__(
        self,
        config: CoreConfig,
        records: DeployRecords,
        pool: PeripheryPool,
        events: EventBus,
    ) -> None:
        self.config = config
        self.records = records
        self.pool = pool
        self.events = events
        self.instance = pysecrets.token_hex(8)  # this process, as a lock holder
        # Swarm secret versions to deploy with (logical → versioned name), set by whoever knows
        # the sources (the bootstrap); otherwise each deploy gets the newest version.
        self.pinned_secrets: dict[str, str] = {}
        self._secrets_lock = anyio.Lock()  # one creation of a missing version at a time

    # ------------------------------------------------------------------------------ deploy

    async def deploy(
        self,
        ref: DeployRef,
        prepared: Prepared,
        ctx: RunContext,
        waiting: Callable[[], None] | None = None,
    ) -> str:
        """Deploy the stack; return the commit deployed. Raises ``StackFailed`` (recorded).
        ``waiting`` is called when only the health gate is left (the run's slot is free)."""
        plan, job = prepared.plan, prepared.job
        masker = deploy_masker(prepared.masker, job)
        recorder = _Recorder(self, ref, job.name, masker)
        started = time.monotonic()
        server = self._pick_server(plan)
        job = replace(job, server=server)
        try:
            channel = await self.pool.channel(server, CHANNEL_WAIT)
            await self._learn_fence(channel)
        except PeripheryUnavailable as exc:
            message = f"server {server!r}: {exc}"
            await self._finish(
                ref, job.name, started, "failed", message, step="connect", transient=True
            )
            raise StackFailed(message) from exc
        try:
            token = await anyio.to_thread.run_sync(
                self.records.lock, job.name, self.instance, ref.deploy_id
            )
        except StackLocked as exc:
            await self._finish(ref, job.name, started, "failed", str(exc), step="lock")
            raise StackFailed(str(exc)) from exc
        except StoreError as exc:
            message = f"the core's state: {exc}"
            await self._finish(ref, job.name, started, "failed", message, step="lock")
            raise StackFailed(message) from exc
        outcome: tuple[str, str, str] | None = None  # status, reason, commit
        transient = False  # the periphery was lost: not the stack's fault, retried at once
        try:
            self.events.publish(
                Kind.DEPLOY_STARTED,
                f"stack:{job.name}",
                DeployStarted(
                    run=ref.run_id,
                    deploy=ref.deploy_id,
                    stack=job.name,
                    server=server,
                    commit=job.commit,
                    trigger=ref.trigger,
                ),
            )
            await recorder._write(
                self.records.deploy_started, ref.deploy_id, token, server, prepared.spec, job.commit
            )
            if job.mode is DeployMode.SWARM:  # the versioned swarm secrets (deploy.secrets)
                env = await self._swarm_secret_env(channel, server, ctx.secret_servers)
                job = replace(job, env={**env, **job.env})
            if plan.repo is not None:
                await self._sync_repo(job, plan, recorder, ctx)
            commit = await deploy_stack(channel, job, recorder, Fence(job.name, token), waiting)
            outcome = ("healthy", "", commit)
        except StackFailed as exc:
            await recorder.end_streams()
            await recorder.flush()
            outcome = ("failed", masker.mask(str(exc)), "")
            transient = recorder.failed_step == "connect" or isinstance(exc.__cause__, ChannelError)
            # masked before anyone logs it (the scheduler does)
            raise StackFailed(outcome[1]) from None
        finally:
            with anyio.CancelScope(shield=True):
                if outcome is None:  # cancelled: the core is stopping
                    outcome = ("interrupted", "the core stopped during the deploy", "")
                status, reason, commit = outcome
                with anyio.move_on_after(STOP_WRITE if status == "interrupted" else 1e9):
                    await recorder.end_streams()
                    await recorder.flush()
                    await self._finish(
                        ref,
                        job.name,
                        started,
                        status,
                        reason,
                        commit,
                        step=recorder.failed_step if status == "failed" else "",
                        tail=recorder.tail_text() if status == "failed" else "",
                        spec=prepared.spec if status == "healthy" else "",
                        form=prepared.form if status == "healthy" else None,
                        transient=transient,
                    )
                try:
                    await anyio.to_thread.run_sync(self.records.unlock, job.name, token)
                except StoreError as exc:
                    log.warning(
                        "stack %s: lock not released (%s); the next deploy takes it over",
                        job.name,
                        exc,
                    )
        return commit

    async def _finish(
        self,
        ref: DeployRef,
        name: str,
        started: float,
        status: str,
        reason: str,
        commit: str = "",
        *,
        step: str = "",
        tail: str = "",
        spec: str = "",
        form: dict[str, Any] | None = None,
        transient: bool = False,
    ) -> None:
        """Publish and record a deploy's outcome (retried until the store takes it). A
        ``transient`` failure (the periphery was lost) may be retried at once."""
        self.publish_finished(ref, name, status, reason, started, step=step, tail=tail)
        await durably(
            f"deploy {ref.deploy_id} ({name} {status})",
            lambda: self.records.deploy_finished(
                ref.deploy_id,
                status,
                reason,
                commit,
                spec=spec,
                spec_form=form,
                failed_step=step,
                tail=tail,
                retry_delay=_at_once if transient else retry_delay,
            ),
        )

    def publish_finished(
        self,
        ref: DeployRef,
        name: str,
        status: str,
        reason: str,
        started: float | None = None,
        *,
        step: str = "",
        tail: str = "",
    ) -> None:
        self.events.publish(
            Kind.DEPLOY_FINISHED,
            f"stack:{name}",
            DeployFinished(
                run=ref.run_id,
                deploy=ref.deploy_id,
                stack=name,
                status=status,
                message=reason,
                seconds=round(time.monotonic() - started, 3) if started else 0.0,
                step=step,
                tail=tail,
            ),
        )

    # ------------------------------------------------------------------------------ parts

    async def _learn_fence(self, channel: CoreChannel) -> None:
        """Before a token is taken: the highest the agent has seen, so that a core whose
        database was lost or restored continues above it (else the agent refuses as stale)."""
        try:
            with anyio.fail_after(CHANNEL_WAIT):
                result, _ = await channel.request(Health())
        except (ChannelError, TimeoutError) as exc:
            raise PeripheryUnavailable(f"no health report: {exc}") from exc
        report = result.value
        if isinstance(report, HealthReport) and report.fence > 0:
            try:
                raised = await anyio.to_thread.run_sync(self.records.raise_fence, report.fence)
            except StoreError as exc:
                log.warning("the agent's fence %s not recorded: %s", report.fence, exc)
                return
            if raised:
                log.warning(
                    "the agent has seen fencing token %s, above this core's: continuing from it"
                    " (was the core's database lost or restored?)",
                    report.fence,
                )

    def _pick_server(self, plan: JobPlan) -> str:
        if len(plan.servers) == 1:
            return plan.servers[0]
        connected = self.pool.connected()
        for server in plan.servers:  # a reachable manager of the swarm
            if server in connected:
                return server
        return plan.servers[0]

    def core_secret_values(self) -> dict[str, bytes]:
        """The swarm secrets the core keeps (``[swarm_secrets]``): logical name → value."""
        held = self.config.secrets
        return {
            logical: held[key].encode()
            for logical, key in self.config.swarm_secrets.items()
            if held.get(key)
        }

    async def _swarm_secret_env(
        self, channel: CoreChannel, server: str, secret_servers: set[str] | None
    ) -> dict[str, str]:
        """The ``*_SECRET`` variables of a Swarm deploy; the core's own secrets' current
        versions created first where missing. Raises ``StackFailed`` when they cannot be."""
        values = self.core_secret_values()
        if not values:
            return await secret_env(channel, self.pinned_secrets)
        async with self._secrets_lock:
            try:
                created, infos = await ensure_versions(channel, values)
            except SecretsUnavailable as exc:
                raise StackFailed(f"swarm secrets on {server!r}: {exc}") from exc
        for name in created:
            log.info("swarm secret %s created on %s", name, server)
        if secret_servers is not None:
            secret_servers.add(server)
        return deploy_env(
            current_versions(infos, {**wanted_versions(values), **self.pinned_secrets})
        )

    async def remove_old_secrets(self, servers: set[str]) -> None:
        """After a run: old versions of the core's swarm secrets that no service uses go."""
        wanted = wanted_versions(self.core_secret_values())
        for server in sorted(servers):
            try:
                channel = await self.pool.channel(server, CHANNEL_WAIT)
                plan = await remove_unused(channel, wanted)
            except (PeripheryUnavailable, SecretsUnavailable) as exc:
                log.warning("old swarm secrets on %s not removed: %s", server, exc)
                continue
            for name in plan.removable:
                log.info("swarm secret %s removed from %s (no service uses it)", name, server)

    async def _sync_repo(
        self, job: StackJob, plan: JobPlan, recorder: _Recorder, ctx: RunContext
    ) -> None:
        """Move the stack's ``[[repo]]`` clone to the commit, once per run, before it deploys."""
        assert plan.repo is not None
        state = ctx.repos.setdefault(plan.repo.name, _RepoState())
        if state.started:
            await state.done.wait()
        else:
            state.started = True
            try:
                channel = await self.pool.channel(plan.repo.server, CHANNEL_WAIT)
                command = RepoSync(
                    url=job.repo_url,
                    commit=job.commit,
                    path=plan.repo.path,
                    credentials=job.credentials,
                )
                await run_step(channel, job, "repo", command, recorder)
            except (StackFailed, PeripheryUnavailable) as exc:
                state.error = str(exc)
            finally:
                state.done.set()
        if state.error:
            recorder.failed_step = recorder.failed_step or "repo"
            raise StackFailed(f"repo {plan.repo.name!r}: {state.error}")

    # ----------------------------------------------------------------------------- remove

    async def take_down(self, name: str, stored: dict[str, Any], swarm_servers: list[str]) -> str:
        """Remove a stack deleted from the resources (``docker stack rm`` / ``compose down``).
        Returns a message for the log."""
        cfg: dict[str, Any] = stored.get("config", {})
        project = str(cfg.get("project_name") or name)
        if cfg.get("swarm"):
            mode, servers = DeployMode.SWARM, swarm_servers
        else:
            mode, servers = DeployMode.COMPOSE, [str(cfg.get("server", ""))]
        servers = [s for s in servers if s]
        if not servers:
            return f"stack {name!r} removed from the resources; no server known to take it down"
        try:
            channel = await self.pool.channel(servers[0], CHANNEL_WAIT)
            command = (
                SwarmRemove(stack=project)
                if mode is DeployMode.SWARM
                else ComposeDown(project=project)
            )
            result, _ = await channel.request(command)
        except (PeripheryUnavailable, ChannelError) as exc:
            return f"stack {name!r}: could not take it down: {exc}"
        if result.error is not None:
            return f"stack {name!r}: taking it down failed: {result.error.message}"
        return f"stack {name!r}: taken down"
