"""The bootstrap, step by step, through the manager's periphery.

1. ``periphery``: reach the manager's periphery over the channel; start it first when it does
   not answer (``systemctl start UNIT`` where systemd runs and a unit is named, else a
   supervised process).
2. ``swarm``: ``docker swarm init`` when the engine is in no swarm (``SwarmInit``).
3. ``secrets``: each listed secret's current version (``core.deploy.secrets``) created when
   missing (``SecretCreate``, the value on the channel only).
4. ``stack NAME``, for each infrastructure stack in order: deployed through the core's own
   reconciler (checkout, pre-deploy, deploy, health gate), unless it is healthy already
   and uses no old secret version.
5. ``secret users``: the other stacks whose services still use an old secret version,
   redeployed (in their tiers' order).
6. ``old secrets``: old versions no service uses any more, removed.
7. ``core``: unless its ``/healthz`` answers, the core started (as its stack when its image is
   present, else as a supervised process) and waited for.
8. ``first sync``: the core's sync planned and applied, and its deploys followed to the end.

A step that finds nothing to do reports ``unchanged``; one that fails raises
``BootstrapFailed`` with its name and what to do before running the same command again.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import anyio
import anyio.abc
import anyio.to_thread
import msgspec

from core.agents import endpoint_of
from core.bootstrap import processes
from core.bootstrap.config import BootstrapConfig, SecretSpec
from core.bootstrap.sources import read_secret
from core.client import ClientError, CoreClient
from core.config import CoreConfig
from core.deploy.deployer import StackDeployer
from core.deploy.jobs import JobError, plan_job, values_of
from core.deploy.secrets import (
    SecretPlan,
    ensure_versions,
    list_managed,
    plan_secrets,
    remove_unused,
    wanted_versions,
)
from core.deploy.stack import StackJob, external_secret
from core.events.bus import EventBus
from core.exceptions import BootstrapFailed, ConfigError, CoreError, PeripheryUnavailable
from core.plan.service import SyncService
from core.pool import PeripheryPool, PoolSettings, ServerEndpoint
from core.reconcile.desired import FixedResources
from core.reconcile.reconciler import Intent, Reconciler, Refused
from core.resources.loader import load_paths
from core.resources.models import ResourceSet, ServerConfig
from core.server import load_private_key
from core.store import Store
from core.store.deploys import DeployRecords
from core.store.intents import IntentLog
from protocol.exceptions import BadKey, ChannelError
from protocol.messages import (
    Command,
    DeployMode,
    HealthGateReport,
    Run,
    SecretCreate,
    SecretReport,
    StackState,
    SwarmInit,
    SwarmReport,
)
from protocol.transport import CoreChannel

log = logging.getLogger(__name__)

PROBE_WAIT = 3.0  # does a periphery answer already?
CHANNEL_WAIT = 15.0  # for the channel between steps
POLL = 0.25  # while following a deploy run or waiting for /healthz
HTTP_TIMEOUT = 30.0  # one call to the core's API
RESUME = "then run the same command again: steps already done are skipped"

DONE = "done"
UNCHANGED = "unchanged"


@dataclass(frozen=True)
class StepResult:
    step: str
    status: str  # DONE or UNCHANGED
    detail: str
    seconds: float


class Progress(Protocol):
    def started(self, step: str) -> None: ...

    def finished(self, result: StepResult) -> None: ...

    def detail(self, step: str, text: str) -> None:
        """Something within a step, as it happens (a stack's deploy step ended)."""


def core_url(core: CoreConfig) -> str:
    host = core.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{core.port}"


@dataclass(frozen=True)
class Prepared:
    """What the steps need, checked before any of them runs."""

    resources: ResourceSet
    jobs: dict[str, StackJob]  # every stack of the resources that can be planned
    pool_endpoint: ServerEndpoint


def prepare(config: BootstrapConfig, core: CoreConfig) -> Prepared:
    """Load and check the resources against the bootstrap config (blocking: a thread)."""
    paths = config.resources or core.resources
    if not paths:
        raise ConfigError(
            f'{config.source}: key "resources": no resource file here nor in {core.source}'
        )
    rs = load_paths(paths)
    if rs.errors:
        shown = "\n".join(f.format() for f in rs.sorted_findings() if f.severity == "error")
        raise BootstrapFailed("config", f"the resources have errors:\n{shown}", "fix them")
    values = values_of(rs, core.secrets)
    jobs: dict[str, StackJob] = {}
    for stack in rs.stacks():
        try:
            jobs[stack.name] = plan_job(rs, stack.name, values, core).job
        except (JobError, CoreError) as exc:
            if stack.name in config.stacks or stack.name == config.core.stack:
                raise BootstrapFailed("config", str(exc), "fix the stack's resource") from exc
    both = sorted({s.name for s in config.secret} & set(core.swarm_secrets))
    if both:
        raise ConfigError(
            f"{config.source}: secret {both[0]!r} is both a [[secret]] here and in"
            f" [swarm_secrets] of {core.source}: keep one source"
        )
    for name in [*config.stacks, *([config.core.stack] if config.core.stack else [])]:
        if ("stack", name) not in rs.resources:
            raise ConfigError(f"{config.source}: stack {name!r} is not in the resources")
    server = rs.resources.get(("server", config.server))
    if server is None:
        raise ConfigError(
            f'{config.source}: key "server": {config.server!r} is not a [[server]] of the resources'
        )
    sc: ServerConfig = server.config
    if not sc.address or not sc.public_key:
        raise ConfigError(
            f"{config.source}: server {config.server!r}: the bootstrap dials the manager's"
            " periphery: give it"
            " [server.config] address (where the periphery listens) and public_key"
        )
    base = Path(core.source).resolve().parent if core.source else Path.cwd()
    try:
        endpoint = endpoint_of(config.server, sc.public_key, sc.address, values, base)
    except (BadKey, CoreError) as exc:
        raise ConfigError(
            f"{config.source}: server {config.server!r}: public_key unusable: {exc}"
        ) from exc
    return Prepared(rs, jobs, endpoint)


class Bootstrap:
    def __init__(
        self,
        config: BootstrapConfig,
        core: CoreConfig,
        progress: Progress,
        *,
        read_stdin: Callable[[], bytes] = lambda: sys.stdin.buffer.read(),
    ) -> None:
        self.config = config
        self.core = core
        self.progress = progress
        self.read_stdin = read_stdin
        self.state_dir = Path(config.state_dir)
        self.results: list[StepResult] = []
        self._pool: PeripheryPool | None = None
        self._deployer: StackDeployer | None = None
        self._reconciler: Reconciler | None = None
        self._records: DeployRecords | None = None
        self._prepared: Prepared | None = None
        self._wanted: dict[str, str] = {}  # logical secret → its version for these sources

    # ------------------------------------------------------------------------------ run

    async def run(self) -> list[StepResult]:
        """Every step in order; raises ``BootstrapFailed`` (or ``ConfigError``)."""
        key = load_private_key(self.core)
        prepared = await anyio.to_thread.run_sync(prepare, self.config, self.core)
        self._prepared = prepared
        await anyio.to_thread.run_sync(lambda: self.state_dir.mkdir(parents=True, exist_ok=True))
        try:
            store = await anyio.to_thread.run_sync(Store.open, self.core.data_dir)
        except CoreError as exc:
            raise BootstrapFailed("config", f"the core's state: {exc}", "fix data_dir") from exc
        pool = PeripheryPool(
            key,
            PoolSettings(
                reconnect_initial_delay=0.2,
                reconnect_max_delay=1.0,
                software="stackward bootstrap",
            ),
        )
        pool.set_servers([prepared.pool_endpoint])
        self._pool = pool
        # the overlay networks bootstrap.toml lists are made by the stacks' deploys, as the
        # core's external_networks are
        core = msgspec.structs.replace(
            self.core,
            external_networks=sorted({*self.core.external_networks, *self.config.networks}),
        )
        events = EventBus(None)
        self._records = records = DeployRecords(store)
        self._deployer = deployer = StackDeployer(core, records, pool, events)
        fingerprint = SyncService(core, store).fingerprint
        self._reconciler = reconciler = Reconciler(
            FixedResources(prepared.resources, core, fingerprint),
            deployer,
            records,
            IntentLog(store),
            events,
        )
        failed: CoreError | None = None
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(pool.run)
                await tg.start(reconciler.run)
                try:
                    await self._steps()
                except (BootstrapFailed, ConfigError) as exc:  # raised below, not in a group
                    failed = exc
                finally:
                    tg.cancel_scope.cancel()
        finally:
            await anyio.to_thread.run_sync(store.close)
        if failed is not None:
            raise failed
        return self.results

    async def _steps(self) -> None:
        await self._step("periphery", self._periphery)
        await self._step("swarm", self._swarm)
        await self._step("secrets", self._secrets)
        for name in self.config.stacks:
            await self._step(f"stack {name}", functools.partial(self._stack, name))
        if self.config.secret or self.core.swarm_secrets:
            await self._step("secret users", self._secret_users)
            await self._step("old secrets", self._old_secrets)
        await self._step("core", self._start_core)
        await self._step("first sync", self._first_sync)

    async def _step(self, name: str, body: Callable[[], Awaitable[tuple[str, str]]]) -> None:
        self.progress.started(name)
        started = time.monotonic()
        try:
            status, detail = await body()
        except BootstrapFailed as exc:
            if exc.step != name:
                raise BootstrapFailed(name, str(exc), exc.hint) from exc
            raise
        except (CoreError, ChannelError) as exc:
            raise BootstrapFailed(name, str(exc)) from exc
        result = StepResult(name, status, detail, time.monotonic() - started)
        self.results.append(result)
        self.progress.finished(result)

    # ------------------------------------------------------------------------- helpers

    @property
    def _secret_vars(self) -> list[str]:
        """Environment variables that hold secret values: not for the processes we start."""
        return [spec.env for spec in self.config.secret if spec.env]

    @property
    def prepared(self) -> Prepared:
        assert self._prepared is not None
        return self._prepared

    @property
    def deployer(self) -> StackDeployer:
        assert self._deployer is not None
        return self._deployer

    async def _channel(self, wait: float = CHANNEL_WAIT) -> CoreChannel:
        assert self._pool is not None
        return await self._pool.channel(self.config.server, wait)

    async def _request(self, step: str, command: Command) -> object:
        channel = await self._channel()
        result, output = await channel.request(command)
        if result.error is not None:
            message = result.error.message
            lines = b"".join(bytes(o.data) for o in output).decode(errors="replace")
            new = [line for line in lines.splitlines()[-10:] if line.strip() not in message]
            raise BootstrapFailed(step, "\n".join([message, *new]), "fix that")
        return result.value

    async def _secret_plan(self) -> SecretPlan:
        infos = await list_managed(await self._channel())
        return plan_secrets(self._wanted, infos)

    # --------------------------------------------------------------------------- steps

    async def _periphery(self) -> tuple[str, str]:
        assert self._pool is not None
        server = self.config.server
        try:
            channel = await self._pool.channel(server, PROBE_WAIT, fail_fast=True)
        except PeripheryUnavailable:
            pass
        else:
            return UNCHANGED, f"{server!r} answers ({channel.peer.software or 'periphery'})"
        spec = self.config.periphery
        log_path = processes.log_file(self.state_dir, "periphery")
        systemd: bool = False
        if spec.systemd_unit:
            systemd = await anyio.to_thread.run_sync(processes.systemd_runs)
        if systemd:
            problem = await anyio.to_thread.run_sync(processes.systemctl_start, spec.systemd_unit)
            if problem:
                raise BootstrapFailed(
                    "periphery", problem, f"see journalctl -u {spec.systemd_unit}"
                )
            how, where = (
                f"systemd unit {spec.systemd_unit} started",
                f"journalctl -u {spec.systemd_unit}",
            )
        else:
            pid = await anyio.to_thread.run_sync(processes.running, self.state_dir, "periphery")
            if pid is None:
                argv = processes.stackward_argv("periphery", "--config", spec.config)
                pid = await anyio.to_thread.run_sync(
                    processes.start, self.state_dir, "periphery", argv, self._secret_vars
                )
                how = f"started under supervision (pid {pid}, log {log_path})"
            else:
                how = f"its supervised process runs (pid {pid})"
            where = str(log_path)
        try:
            await self._pool.channel(server, spec.start_timeout)
        except PeripheryUnavailable as exc:
            tail = await anyio.to_thread.run_sync(processes.tail, self.state_dir, "periphery")
            raise BootstrapFailed(
                "periphery",
                f"{how}, but {exc}" + (f"\n{tail}" if tail and "systemd" not in how else ""),
                f"see {where}; check {spec.config} (listen, core_public_keys) against the"
                f" [[server]] {server!r} (address, public_key)",
            ) from exc
        return DONE, how

    async def _swarm(self) -> tuple[str, str]:
        report = await self._request(
            "swarm", SwarmInit(advertise_addr=self.config.swarm.advertise_addr)
        )
        if not isinstance(report, SwarmReport):
            raise BootstrapFailed("swarm", "the periphery gave no swarm report", "upgrade it")
        if report.changed:
            return DONE, f"swarm initialised (node {report.node_id})"
        return UNCHANGED, f"a swarm manager already (node {report.node_id})"

    def _read_values(self, plain: bool = False) -> dict[str, bytes]:
        def read(spec: SecretSpec) -> bytes:
            return read_secret(spec, os.environ, self.read_stdin)

        return {spec.name: read(spec) for spec in self.config.secret if spec.plain is plain}

    async def _secrets(self) -> tuple[str, str]:
        """The listed secrets and those the core keeps ([swarm_secrets]), at their current
        versions; the plain-named ones (``plain = true``, the core's [external_secrets]) made
        when missing."""
        plain = {
            **{
                name: self.core.secrets[key].encode()
                for name, key in self.core.external_secrets.items()
            },
            **await anyio.to_thread.run_sync(functools.partial(self._read_values, plain=True)),
        }
        made = [
            name
            for name, data in sorted(plain.items())
            if await self._made(f"secret {name}", external_secret(name, data))
        ]
        plain_detail = ", ".join(f"{n}" + (" (new)" if n in made else "") for n in sorted(plain))
        values = {
            **self.deployer.core_secret_values(),
            **await anyio.to_thread.run_sync(self._read_values),
        }
        if not values:
            if plain:
                return (DONE if made else UNCHANGED), plain_detail
            return UNCHANGED, "no secrets listed"
        self._wanted = wanted_versions(values)
        self.deployer.pinned_secrets = dict(self._wanted)
        created, _ = await ensure_versions(await self._channel(), values)
        detail = ", ".join(
            f"{name} → {version}" + (" (new)" if version in created else "")
            for name, version in sorted(self._wanted.items())
        )
        if plain:
            detail = f"{detail}; {plain_detail}"
        return (DONE if created or made else UNCHANGED), detail

    async def _made(self, step: str, command: SecretCreate) -> bool:
        report = await self._request(step, command)
        return isinstance(report, SecretReport) and report.changed

    async def _healthy(self, job: StackJob) -> bool | None:
        """True/False: the stack runs healthy or not; None: nothing of it runs."""
        report = await self._request(
            f"stack {job.name}",
            StackState(
                mode=job.mode, name=job.docker_name, ignore_services=list(job.ignore_services)
            ),
        )
        if not isinstance(report, HealthGateReport) or not report.exists:
            return None
        return all(v.healthy for v in report.services)

    async def _stack(self, name: str) -> tuple[str, str]:
        job = self.prepared.jobs[name]
        healthy = await self._healthy(job)
        stale: list[str] = []
        if self._wanted and job.mode is DeployMode.SWARM:
            stale = (await self._secret_plan()).stale.get(job.docker_name, [])
        if healthy and not stale:
            return UNCHANGED, "healthy"
        why = (
            "not running"
            if healthy is None
            else "not healthy"
            if not healthy
            else f"uses {', '.join(stale)}"
        )
        commits = await self._deploy([name], f"stack {name}")
        return DONE, f"{why}: deployed {commits.get(name, '')[:12]}, healthy"

    async def _deploy(self, names: Sequence[str], step: str) -> dict[str, str]:
        """Deploy ``names`` in one run of the core's deploy service; their commits."""
        assert self._reconciler is not None and self._records is not None
        try:
            admission = await self._reconciler.submit(Intent(list(names), "bootstrap", step))
        except Refused as exc:
            raise BootstrapFailed(step, str(exc), "fix the stack's resource") from exc
        [run_id] = admission.run_ids
        records = self._records
        seen: set[tuple[str, str]] = set()
        try:
            with anyio.fail_after(self.config.stack_timeout * len(names)):
                while True:
                    run = await anyio.to_thread.run_sync(records.run, run_id)
                    assert run is not None
                    self._report_steps(step, run, seen)
                    if run["status"] != "running":
                        break
                    await anyio.sleep(POLL)
        except TimeoutError as exc:
            raise BootstrapFailed(
                step,
                f"deploy run {run_id} still running after {self.config.stack_timeout:g}s a stack",
                "raise stack_timeout or find out what the stack waits for",
            ) from exc
        deploys = run["deploys"]
        if run["status"] == "succeeded":
            return {d["stack"]: str(d.get("commit") or "") for d in deploys}
        problems = []
        for d in deploys:
            if d["status"] == "healthy":
                continue
            problems.append(f"{d['stack']}: {d['status']}: {d.get('reason') or ''}".rstrip(": "))
            if d["status"] == "failed":
                lines = await anyio.to_thread.run_sync(records.output, d["id"])
                problems.extend(f"  | {line.text.rstrip()}" for line in lines[-8:])
        raise BootstrapFailed(
            step,
            f"deploy run {run_id} failed:\n" + "\n".join(problems),
            "fix the stack (its files in git, or its resource)",
        )

    def _report_steps(self, step: str, run: dict[str, Any], seen: set[tuple[str, str]]) -> None:
        """Each deploy step of the run that ended since the last look, to the progress."""
        for deploy in run.get("deploys") or []:
            for item in deploy.get("steps") or []:
                key = (str(deploy["stack"]), str(item["step"]))
                if item.get("finished_at") is None or key in seen:
                    continue
                seen.add(key)
                took = float(item["finished_at"]) - float(item.get("started_at") or 0)
                message = f": {item['message']}" if item.get("message") else ""
                self.progress.detail(
                    step, f"{key[0]}: {key[1]} {item['status']}{message} ({took:.1f}s)"
                )

    async def _secret_users(self) -> tuple[str, str]:
        plan = await self._secret_plan()
        by_project = {job.docker_name: name for name, job in self.prepared.jobs.items()}
        names = [by_project[s] for s in plan.stale_stacks if s in by_project]
        unknown = [s for s in plan.stale_stacks if s not in by_project]
        note = f"; not in the resources: {', '.join(unknown)}" if unknown else ""
        if not names:
            return UNCHANGED, "no stack uses an old secret version" + note
        await self._deploy(names, "secret users")
        return DONE, f"redeployed {', '.join(names)}" + note

    async def _old_secrets(self) -> tuple[str, str]:
        plan = await remove_unused(await self._channel(), self._wanted)
        kept = "; still in use: " + ", ".join(
            f"{n} (by {', '.join(s)})" for n, s in sorted(plan.in_use.items())
        )
        kept = kept if plan.in_use else ""
        if not plan.removable:
            return UNCHANGED, "no old version to remove" + kept
        return DONE, f"removed {', '.join(plan.removable)}" + kept

    async def _core_answers(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(core_url(self.core) + "/healthz") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def _start_core(self) -> tuple[str, str]:
        spec = self.config.core
        timeout = aiohttp.ClientTimeout(total=2.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            if await self._core_answers(session):
                return UNCHANGED, f"answers on {core_url(self.core)}"
            how = ""
            if spec.stack:
                channel = await self._channel()
                result, _ = await channel.request(
                    Run(argv=["docker", "image", "inspect", "--format", "{{.Id}}", spec.image])
                )
                if result.error is None and result.exit_code == 0:
                    await self._deploy([spec.stack], "core")
                    how = f"deployed as the stack {spec.stack} ({spec.image})"
                else:
                    how = f"image {spec.image} missing: "
            if not how.startswith("deployed"):
                pid = await anyio.to_thread.run_sync(processes.running, self.state_dir, "core")
                if pid is None:
                    argv = processes.stackward_argv("core", "--config", self.core.source)
                    pid = await anyio.to_thread.run_sync(
                        processes.start, self.state_dir, "core", argv, self._secret_vars
                    )
                log_path = processes.log_file(self.state_dir, "core")
                how += f"started under supervision (pid {pid}, log {log_path})"
            with anyio.move_on_after(spec.start_timeout):
                while True:
                    if await self._core_answers(session):
                        return DONE, f"{how}; answers on {core_url(self.core)}"
                    await anyio.sleep(POLL)
        tail = await anyio.to_thread.run_sync(processes.tail, self.state_dir, "core")
        raise BootstrapFailed(
            "core",
            f"{how}, but /healthz did not answer within {spec.start_timeout:g}s"
            + (f"\n{tail}" if tail else ""),
            f"check {self.core.source} and the core's log",
        )

    async def _first_sync(self) -> tuple[str, str]:
        sync = self.config.core.sync
        if not sync:
            return UNCHANGED, "no sync to run (core.sync is empty)"
        client = CoreClient(core_url(self.core), self.core.api_tokens[0], timeout=HTTP_TIMEOUT)
        async with client:
            try:
                return await self._sync_through(client, sync)
            except ClientError as exc:
                raise BootstrapFailed("first sync", str(exc), "fix that") from exc

    async def _sync_through(self, client: CoreClient, sync: str) -> tuple[str, str]:
        plan = await client.plan(sync)
        counts = plan.get("counts", {})
        if not any(counts.get(k) for k in ("create", "update", "delete", "deploy")):
            return UNCHANGED, f"sync {sync!r}: nothing to change"
        applied = await client.apply(sync, plan["id"])
        if applied.get("deploy_error"):
            raise BootstrapFailed(
                "first sync", f"deploys not started: {applied['deploy_error']}", "fix that"
            )
        summary = (
            f"sync {sync!r}: plan {plan['id']} applied ({counts.get('create', 0)} created,"
            f" {counts.get('update', 0)} updated, {counts.get('delete', 0)} deleted)"
        )
        run_ids = sorted(set((applied.get("runs") or {}).values()))
        if not run_ids:
            return DONE, summary
        healthy = 0
        for run_id in run_ids:
            run: dict[str, Any] = {"status": "running", "deploys": []}
            with anyio.move_on_after(self.config.core.sync_timeout):
                seen: set[tuple[str, str]] = set()
                while True:
                    run = await client.run(run_id)
                    self._report_steps("first sync", run, seen)
                    if run["status"] != "running":
                        break
                    await anyio.sleep(POLL)
            if run["status"] == "running":
                raise BootstrapFailed(
                    "first sync",
                    f"deploy run {run_id} still running after {self.config.core.sync_timeout:g}s",
                    "the core goes on with it: follow it with stackward status",
                )
            if run["status"] != "succeeded":
                bad = [
                    f"{d['stack']}: {d['status']}: {d.get('reason') or ''}"
                    for d in run["deploys"]
                    if d["status"] != "healthy"
                ]
                raise BootstrapFailed(
                    "first sync", f"deploy run {run_id} failed:\n" + "\n".join(bad), "fix it"
                )
            healthy += len(run["deploys"])
        runs = ", ".join(str(r) for r in run_ids)
        return DONE, f"{summary}; run {runs}: {healthy} stacks healthy"
