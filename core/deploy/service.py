"""The core's deploys: runs over the graph, one stack's lock and fence, records and output.

``DeployService.start`` checks everything it can before anything runs (the stacks exist, each has
a repository and a server, the commits resolve), records a run with one pending deploy per stack,
and runs it in the background: stacks through ``schedule.run_graph``, each one's steps through
``stack.deploy_stack`` on its periphery's channel. Output is masked (core secrets and secret
variables never reach the store) and kept with the deploy, in order.
"""

from __future__ import annotations

import logging
import secrets as pysecrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from core.config import CoreConfig
from core.deploy.jobs import JobError, JobPlan, plan_job, values_of
from core.deploy.networks import with_network_order
from core.deploy.schedule import DEFAULT_PARALLEL, StackFailed, StackOutcome, Status, run_graph
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
from core.exceptions import CoreError, PeripheryUnavailable, SecretsUnavailable
from core.git import GitError, resolve_branch
from core.pool import PeripheryPool
from core.resources.graph import Graph, stack_graph
from core.resources.models import ResourceSet
from core.resources.variables import Values
from core.store import Store
from core.store.deploys import DeployRecords, OutputLine, StackLocked
from protocol.exceptions import ChannelError
from protocol.messages import (
    ComposeDown,
    DeployMode,
    Fence,
    RepoSync,
    Stream,
    SwarmRemove,
)
from protocol.transport import CoreChannel

log = logging.getLogger(__name__)

CHANNEL_WAIT = 15.0  # how long a deploy waits for its server's channel
FLUSH_LINES = 64  # output chunks buffered per deploy before they are written


class DeployRefused(CoreError):
    """A deploy cannot start (unknown stack, no server, no commit, already running)."""


@dataclass
class _RepoState:
    """One repo's sync within a run: done once, by the first stack that needs it."""

    started: bool = False
    done: anyio.Event = field(default_factory=anyio.Event)
    error: str = ""


@dataclass
class _Live:
    """What one running deploy has not yet written to the store."""

    deploy_id: int
    run_id: int = 0
    trigger: str = ""
    started: float = field(default_factory=time.monotonic)
    seq: int = 0
    pending: list[OutputLine] = field(default_factory=list)


class _Recorder:
    def __init__(self, service: DeployService, masker: Values) -> None:
        self.service = service
        self.masker = masker

    def _live(self, job: StackJob) -> _Live:
        return self.service._live[job.name]

    async def step_started(self, job: StackJob, step: str) -> None:
        live = self._live(job)
        self.service.events.publish(
            Kind.DEPLOY_STEP,
            f"stack:{job.name}",
            DeployStep(deploy=live.deploy_id, stack=job.name, step=step, state="started"),
        )
        await anyio.to_thread.run_sync(self.service.records.step_started, live.deploy_id, step)

    async def output(self, job: StackJob, step: str, stream: Stream, data: bytes) -> None:
        live = self._live(job)
        text = self.masker.mask(data.decode("utf-8", errors="replace"))
        name = "stderr" if stream is Stream.STDERR else "stdout"
        live.pending.append(OutputLine(live.seq, step, name, time.time(), text))
        self.service.events.publish(
            Kind.DEPLOY_OUTPUT,
            f"stack:{job.name}",
            DeployOutput(
                deploy=live.deploy_id,
                stack=job.name,
                step=step,
                stream=name,
                seq=live.seq,
                text=text,
            ),
        )
        live.seq += 1
        if len(live.pending) >= FLUSH_LINES:
            await self.flush(live)

    async def flush(self, live: _Live) -> None:
        lines, live.pending = live.pending, []
        await anyio.to_thread.run_sync(self.service.records.add_output, live.deploy_id, lines)

    async def step_finished(
        self, job: StackJob, step: str, ok: bool, message: str, seconds: float
    ) -> None:
        live = self._live(job)
        await self.flush(live)
        masked = self.masker.mask(message)
        self.service.events.publish(
            Kind.DEPLOY_STEP,
            f"stack:{job.name}",
            DeployStep(
                deploy=live.deploy_id,
                stack=job.name,
                step=step,
                state="ok" if ok else "failed",
                message=masked,
                seconds=round(seconds, 3),
            ),
        )
        await anyio.to_thread.run_sync(
            self.service.records.step_finished, live.deploy_id, step, ok, masked
        )


class DeployService:
    def __init__(
        self,
        config: CoreConfig,
        store: Store,
        pool: PeripheryPool,
        *,
        parallel: int = DEFAULT_PARALLEL,
        events: EventBus | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.records = DeployRecords(store)
        self.pool = pool
        self.events = events if events is not None else EventBus(None)
        self.parallel = parallel
        self.instance = pysecrets.token_hex(8)  # this process, as a lock holder
        # Swarm secret versions to deploy with (logical → versioned name), set by whoever knows
        # the sources (the bootstrap); otherwise each deploy gets the newest version.
        self.pinned_secrets: dict[str, str] = {}
        self._secrets_lock = anyio.Lock()  # one creation of a missing version at a time
        self._tg: anyio.abc.TaskGroup | None = None
        self._live: dict[str, _Live] = {}

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the background runs until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    # ------------------------------------------------------------------------------- start

    async def start(
        self,
        rs: ResourceSet,
        stacks: Sequence[str],
        trigger: str,
        *,
        commits: Mapping[str, str] | None = None,
        heads: Mapping[tuple[str, str], str] | None = None,
    ) -> int:
        """Check and record a run of ``stacks`` (deploy order from ``rs``); run it in the
        background; return its id. Raises ``DeployRefused`` before anything runs.

        ``commits`` pins stacks to a commit (a webhook's push names it); the others deploy the
        head of their branch (``heads``: branch heads already known, by ``(url, branch)``)."""
        if self._tg is None:
            raise DeployRefused("the deploy service is not running")
        if not stacks:
            raise DeployRefused("nothing to deploy")
        busy = sorted(set(stacks) & set(self._live))
        if busy:
            raise DeployRefused(f"already being deployed: {', '.join(busy)}; wait for it to end")
        values = values_of(rs, self.config.secrets)
        plans: dict[str, JobPlan] = {}
        try:
            for name in stacks:
                plans[name] = plan_job(rs, name, values, self.config)
        except (JobError, CoreError) as exc:
            raise DeployRefused(str(exc)) from exc
        known_heads: dict[tuple[str, str], str] = dict(heads or {})
        jobs: dict[str, StackJob] = {}
        for name, plan in plans.items():
            src = plan.source
            if src is None:  # files on the host, or file_contents: no commit to resolve
                jobs[name] = plan.job
                continue
            commit = src.commit or (commits or {}).get(name, "")
            if not commit:
                key = (src.url, src.branch)
                if key not in known_heads:
                    try:
                        known_heads[key] = await resolve_branch(
                            src.url, src.branch, credentials=src.credentials
                        )
                    except GitError as exc:
                        raise DeployRefused(f"stack {name!r}: {exc}") from exc
                commit = known_heads[key]
            jobs[name] = replace(plan.job, repo_url=src.url, commit=commit)
        graph = stack_graph([(s.name, s.tier, s.after) for s in rs.stacks()], rs.tiers)
        try:
            graph.waves()
        except ValueError as exc:
            raise DeployRefused(str(exc)) from exc
        graph = await with_network_order(rs, jobs, graph, self.config)
        run_id, ids = await anyio.to_thread.run_sync(
            self.records.start_run, trigger, [(n, jobs[n].server) for n in sorted(jobs)]
        )
        for name in jobs:
            self._live[name] = _Live(ids[name], run_id, trigger)
        masker = values
        repos = {p.repo.name: _RepoState() for p in plans.values() if p.repo is not None}
        self._tg.start_soon(self._execute, run_id, graph, jobs, plans, masker, repos)
        log.info("deploy run %s started (%s): %s", run_id, trigger, ", ".join(sorted(jobs)))
        return run_id

    # ----------------------------------------------------------------------------- execute

    async def _execute(
        self,
        run_id: int,
        graph: Graph,
        jobs: dict[str, StackJob],
        plans: dict[str, JobPlan],
        masker: Values,
        repos: dict[str, _RepoState],
    ) -> None:
        recorder = _Recorder(self, masker)
        secret_servers: set[str] = set()  # where this run made sure of the swarm secrets

        async def deploy(name: str) -> None:
            await self._deploy_one(jobs[name], plans[name], recorder, repos, secret_servers)

        async def finished(outcome: StackOutcome) -> None:
            live = self._live.get(outcome.name)
            if live is not None and outcome.status is Status.SKIPPED:
                self._publish_finished(outcome.name, live, "skipped", outcome.reason)
                await anyio.to_thread.run_sync(
                    self.records.deploy_finished, live.deploy_id, "skipped", outcome.reason
                )

        try:
            outcomes = await run_graph(
                graph, list(jobs), deploy, limit=self.parallel, on_finished=finished
            )
            ok = all(o.status is Status.HEALTHY for o in outcomes.values())
            status = "succeeded" if ok else "failed"
        except Exception:
            log.exception("deploy run %s broke", run_id)
            status = "failed"
        finally:
            for name in jobs:
                self._live.pop(name, None)
        await self._remove_old_secrets(secret_servers)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.records.finish_run, run_id, status)
        log.info("deploy run %s %s", run_id, status)

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

    async def _remove_old_secrets(self, servers: set[str]) -> None:
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

    async def _pick_server(self, plan: JobPlan) -> str:
        if len(plan.servers) == 1:
            return plan.servers[0]
        connected = self.pool.connected()
        for server in plan.servers:  # a reachable manager of the swarm
            if server in connected:
                return server
        return plan.servers[0]

    async def _sync_repo(
        self, job: StackJob, plan: JobPlan, recorder: _Recorder, repos: dict[str, _RepoState]
    ) -> None:
        """Move the stack's ``[[repo]]`` clone to the commit, once per run, before it deploys."""
        assert plan.repo is not None
        state = repos[plan.repo.name]
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
            raise StackFailed(f"repo {plan.repo.name!r}: {state.error}")

    async def _deploy_one(
        self,
        job: StackJob,
        plan: JobPlan,
        recorder: _Recorder,
        repos: dict[str, _RepoState],
        secret_servers: set[str] | None = None,
    ) -> None:
        live = self._live[job.name]
        server = await self._pick_server(plan)
        job = replace(job, server=server)
        try:
            token = await anyio.to_thread.run_sync(
                self.records.lock, job.name, self.instance, live.deploy_id
            )
        except StackLocked as exc:
            await self._finish(job.name, live, "failed", str(exc))
            raise StackFailed(str(exc)) from exc
        try:
            live.started = time.monotonic()
            self.events.publish(
                Kind.DEPLOY_STARTED,
                f"stack:{job.name}",
                DeployStarted(
                    run=live.run_id,
                    deploy=live.deploy_id,
                    stack=job.name,
                    server=server,
                    commit=job.commit,
                    trigger=live.trigger,
                ),
            )
            await anyio.to_thread.run_sync(
                self.records.deploy_started, live.deploy_id, token, server
            )
            try:
                channel = await self.pool.channel(server, CHANNEL_WAIT)
            except PeripheryUnavailable as exc:
                message = f"server {server!r}: {exc}"
                await self._finish(job.name, live, "failed", message)
                raise StackFailed(message) from exc
            try:
                if job.mode is DeployMode.SWARM:  # the versioned swarm secrets (deploy.secrets)
                    env = await self._swarm_secret_env(channel, server, secret_servers)
                    job = replace(job, env={**env, **job.env})
                if plan.repo is not None:
                    await self._sync_repo(job, plan, recorder, repos)
                commit = await deploy_stack(channel, job, recorder, Fence(job.name, token))
            except StackFailed as exc:
                await recorder.flush(live)
                await self._finish(job.name, live, "failed", recorder.masker.mask(str(exc)))
                raise
            await recorder.flush(live)
            await self._finish(job.name, live, "healthy", "", commit)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.records.unlock, job.name, token)

    def _publish_finished(self, name: str, live: _Live, status: str, reason: str) -> None:
        self.events.publish(
            Kind.DEPLOY_FINISHED,
            f"stack:{name}",
            DeployFinished(
                run=live.run_id,
                deploy=live.deploy_id,
                stack=name,
                status=status,
                message=reason,
                seconds=round(time.monotonic() - live.started, 3),
            ),
        )

    def running(self) -> set[str]:
        """The stacks being deployed now."""
        return set(self._live)

    async def _finish(
        self, name: str, live: _Live, status: str, reason: str, commit: str = ""
    ) -> None:
        self._publish_finished(name, live, status, reason)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                self.records.deploy_finished, live.deploy_id, status, reason, commit
            )

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
