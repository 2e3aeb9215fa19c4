"""Drift: what runs differs from what the core deployed.

The rules (pure, tested without sockets):

- a service of a deployed stack **removed** or **changed** (scaled, updated) while no deploy of
  the stack runs is drift at once;
- a container that **died** (or was killed, or ran out of memory) or turned **unhealthy** starts
  a grace period (``drift_grace``); if the stack is still not healthy when it ends, that is
  drift (Swarm usually replaces the task in time, Compose without a restart policy does not);
- events during a deploy of the stack, and for ``AFTER_DEPLOY_QUIET`` seconds after it, are the
  deploy's own doing.

What follows is the stack's ``on_drift``: ``alert`` (the default: a ``drift`` event and a
warning), ``redeploy`` (deploy the stack again, at most ``drift_redeploys`` times per
``drift_window`` seconds: past that it only alerts, so a crash-looping stack is not redeployed
forever), or ``ignore`` (the event is still recorded).

``DriftWatch`` does the I/O: it follows the bus (Docker events, deploys), asks the stack's
periphery for the stack's state when a grace period ends, publishes ``drift`` and
``health.changed``, records what the engine reports (convergence reads it: a drifted stack is not
converged), and asks the reconciler for redeploys (an intent, ``drift``). A deploy that failed
before it reached the engine (checkout, pre-deploy) changes nothing the engine runs, so it says
nothing about health.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from core.config import CoreConfig
from core.events.bus import EventBus, Subscription
from core.events.model import Drift, Filter, HealthChanged, Kind
from core.exceptions import CoreError, StoreError
from core.pool import PeripheryPool
from core.reconcile.reconciler import Intent, Reconciler
from core.resources.variables import Values
from core.store import Store
from core.store.deploys import DeployRecords
from protocol.messages import DeployMode, HealthGateReport, StackState

log = logging.getLogger(__name__)

AFTER_DEPLOY_QUIET = 5.0  # seconds after a deploy during which its own events are expected
STATE_TIMEOUT = 15.0  # seconds to get a stack's state from its periphery
ON_DRIFT = ("alert", "redeploy", "ignore")
ENGINE_STEPS = ("deploy", "health")  # a failure there changed what the engine runs


@dataclass(frozen=True)
class StackInfo:
    name: str  # the stack resource's name
    docker_name: str  # compose project / swarm stack name
    swarm: bool
    servers: tuple[str, ...]
    ignore_services: tuple[str, ...] = ()
    on_drift: str = "alert"


class Managed:
    """The deployed stacks by their Docker name, to map engine events to stacks."""

    def __init__(self, stacks: list[StackInfo] | None = None) -> None:
        self.by_name: dict[str, StackInfo] = {}
        self.by_docker: dict[str, StackInfo] = {}
        for s in stacks or []:
            self.by_name[s.name] = s
            self.by_docker[s.docker_name] = s

    def stack_of(self, type_: str, name: str, project: str) -> StackInfo | None:
        if project:
            return self.by_docker.get(project)
        if type_ == "service":  # swarm services are named STACK_SERVICE
            best: StackInfo | None = None
            for docker_name, info in self.by_docker.items():
                if info.swarm and name.startswith(docker_name + "_"):
                    if best is None or len(docker_name) > len(best.docker_name):
                        best = info
            return best
        return None


@dataclass(frozen=True)
class Trigger:
    reason: str  # removed | changed | dead | unhealthy | recovered
    detail: str
    service: str
    at_once: bool  # drift now; else check the stack's state after the grace period


def triage(
    type_: str, action: str, name: str, service: str, detail: dict[str, str]
) -> Trigger | None:
    """What an engine event about a deployed stack means, outside its deploys."""
    if type_ == "service":
        if action == "remove":
            return Trigger("removed", f"service {name} was removed by hand", name, True)
        if action == "update":
            if "replicas.new" in detail:
                old, new = detail.get("replicas.old", "?"), detail["replicas.new"]
                return Trigger(
                    "changed", f"service {name} scaled by hand ({old} → {new})", name, True
                )
            state = detail.get("updatestate.new", "")
            if state.startswith("rollback") or state == "paused":
                return Trigger("unhealthy", f"service {name}: update {state}", name, False)
            if not state:
                return Trigger("changed", f"service {name} updated by hand", name, True)
        return None
    if type_ == "container":
        what = service or name
        if action in ("die", "kill", "oom"):
            code = detail.get("exitCode")
            text = {"die": "exited", "kill": "was killed", "oom": "ran out of memory"}[action]
            suffix = f" (exit code {code})" if code is not None and action == "die" else ""
            return Trigger("dead", f"container {name} of {what} {text}{suffix}", what, False)
        if action == "health_status":
            if detail.get("health") == "unhealthy":
                return Trigger("unhealthy", f"container {name} of {what} is unhealthy", what, False)
            return Trigger("recovered", f"container {name} of {what} is healthy", what, False)
        if action == "start":
            return Trigger("recovered", f"container {name} of {what} started", what, False)
    return None


class FlapLimiter:
    """At most ``limit`` actions per key in any ``window`` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        times = self._times.setdefault(key, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True


def managed_from(stored: dict[tuple[str, str], Any], deployed: set[str]) -> Managed:
    """The stacks in the applied resources that have been deployed healthy at least once."""
    stacks = []
    for (kind, name), res in stored.items():
        if kind != "stack" or name not in deployed:
            continue
        cfg: dict[str, Any] = res.config.get("config", {})
        swarm = str(cfg.get("swarm") or "")
        if swarm:
            swarm_res = stored.get(("swarm", swarm))
            servers = (
                tuple(swarm_res.config.get("config", {}).get("servers", [])) if swarm_res else ()
            )
        else:
            servers = (str(cfg.get("server", "")),)
        on_drift = str(res.config.get("on_drift") or "alert")
        stacks.append(
            StackInfo(
                name=name,
                docker_name=str(cfg.get("project_name") or name),
                swarm=bool(swarm),
                servers=tuple(s for s in servers if s),
                ignore_services=tuple(cfg.get("ignore_services", [])),
                on_drift=on_drift if on_drift in ON_DRIFT else "alert",
            )
        )
    return Managed(stacks)


@dataclass
class _StackWatch:
    busy: bool = False
    quiet_until: float = 0.0
    healthy: bool | None = None
    check_pending: bool = False
    reasons: list[Trigger] = field(default_factory=list)


class DriftWatch:
    def __init__(
        self,
        config: CoreConfig,
        store: Store,
        records: DeployRecords,
        events: EventBus,
        pool: PeripheryPool,
        reconciler: Reconciler,
    ) -> None:
        self.config = config
        self.store = store
        self.records = records
        self.events = events
        self.pool = pool
        self.reconciler = reconciler
        self.grace = config.drift_grace
        self.limiter = FlapLimiter(config.drift_redeploys, config.drift_window)
        self.managed = Managed()
        self.masker = Values({}, config.secrets)  # what the state reports may quote
        self._stacks: dict[str, _StackWatch] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def _state(self, name: str) -> _StackWatch:
        return self._stacks.setdefault(name, _StackWatch())

    async def refresh(self) -> None:
        stored = await anyio.to_thread.run_sync(self.store.resources)
        deployed = await anyio.to_thread.run_sync(self.records.ever_healthy)
        self.managed = managed_from(stored, deployed)
        variables = {
            name: str(res.config.get("config", {}).get("value", ""))
            for (kind, name), res in stored.items()
            if kind == "variable"
        }
        secret = [
            name
            for (kind, name), res in stored.items()
            if kind == "variable" and res.config.get("config", {}).get("is_secret")
        ]
        self.masker = Values(variables, self.config.secrets, secret)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        bus = self.events
        flt = Filter(kinds=("docker.event", "deploy.started", "deploy.finished", "resource"))
        with bus.subscribe(flt, limit=10_000) as sub:
            await self.refresh()
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                try:
                    await self._follow(sub)
                finally:
                    self._tg = None

    async def _follow(self, sub: Subscription) -> None:
        subscriber = sub.subscriber
        while True:
            for event in subscriber.take(256):
                try:
                    await self._on_event(event.kind, event.data())
                except Exception:
                    log.exception("drift: event %s", event.id)
            lagged = subscriber.take_lagged()
            if lagged is not None:
                log.warning("drift: missed %s event(s) (busy core)", lagged.count)
            if not subscriber.queue:
                await subscriber.wait()

    async def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        now = time.monotonic()
        if kind == Kind.DEPLOY_STARTED:
            self._state(data["stack"]).busy = True
            return
        if kind == Kind.DEPLOY_FINISHED:
            st = self._state(data["stack"])
            st.busy = False
            st.quiet_until = now + AFTER_DEPLOY_QUIET
            st.reasons.clear()
            status, step = data["status"], data.get("step", "")
            if status == "healthy" or (status == "failed" and step in ENGINE_STEPS):
                self._health(data["stack"], status == "healthy", data.get("message", ""))
                await self.refresh()
            return
        if kind == Kind.RESOURCE_APPLIED:
            await self.refresh()
            return
        if kind != Kind.DOCKER:
            return
        stack = data.get("stack", "")
        info = self.managed.by_name.get(stack)
        if info is None:
            return
        st = self._state(stack)
        if st.busy or stack in self.reconciler.deploying():
            return  # the deploy's own doing; its health gate judges the outcome
        trigger = triage(
            data["type"],
            data["action"],
            data.get("name", ""),
            data.get("service", ""),
            data.get("detail", {}),
        )
        if trigger is None:
            return
        if trigger.at_once and now >= st.quiet_until:
            await self._drift(info, trigger.reason, trigger.detail, [trigger.service])
            return
        # Just after a deploy, even a removal may be its doing: look at the state once the
        # quiet period is over instead.
        if trigger.reason != "recovered":
            st.reasons.append(trigger)
        elif st.healthy is not False:
            return  # healthy already: nothing to re-check
        if not st.check_pending and self._tg is not None:
            st.check_pending = True
            self._tg.start_soon(self._check_later, info)

    def sweep(self, server: str) -> None:
        """A server (re)connected: what changed while it was away has sent no event, so look
        at each of its stacks once the grace period is over."""
        for info in self.managed.by_name.values():
            if server not in info.servers[:1] and not (info.swarm and server in info.servers):
                continue
            st = self._state(info.name)
            st.reasons.append(
                Trigger("unhealthy", f"not healthy when {server} came back", "", False)
            )
            if not st.check_pending and self._tg is not None:
                st.check_pending = True
                self._tg.start_soon(self._check_later, info)

    async def _check_later(self, info: StackInfo) -> None:
        st = self._state(info.name)
        try:
            await anyio.sleep(max(self.grace, st.quiet_until - time.monotonic()))
            if st.busy or info.name in self.reconciler.deploying():
                st.reasons.clear()  # a deploy (or one waiting for its tier) will judge it
                return
            healthy, detail, services = await self._stack_state(info)
            log.info(
                "drift: %s after the grace period: healthy=%s (%s)", info.name, healthy, detail
            )
            reasons, st.reasons = st.reasons, []
            self._health(info.name, healthy, detail)
            if not healthy and reasons:
                reason = reasons[-1].reason
                text = "; ".join(dict.fromkeys(r.detail for r in reasons))
                await self._drift(
                    info, reason, f"{text}; after {self.grace:g}s: {detail}", services
                )
        finally:
            st.check_pending = False

    async def _stack_state(self, info: StackInfo) -> tuple[bool, str, list[str]]:
        pool = self.pool
        connected = pool.connected()
        server = next(
            (s for s in info.servers if s in connected), info.servers[0] if info.servers else ""
        )
        command = StackState(
            mode=DeployMode.SWARM if info.swarm else DeployMode.COMPOSE,
            name=info.docker_name,
            ignore_services=list(info.ignore_services),
        )
        try:
            with anyio.fail_after(STATE_TIMEOUT):
                channel = await pool.channel(server, STATE_TIMEOUT)
                result, _ = await channel.request(command)
        except Exception as exc:  # unreachable periphery, closed channel, timeout
            return False, f"state unknown: {exc}", []
        report = result.value
        if result.error is not None or not isinstance(report, HealthGateReport):
            return False, result.error.message if result.error else "no state", []
        if not report.exists:
            return False, "nothing of the stack runs", []
        bad = [v for v in report.services if not v.healthy]
        detail = "; ".join(f"{v.service}: {v.detail or v.state}" for v in bad) or "healthy"
        detail = self.masker.mask(detail)  # the state may quote a container's log lines
        return not bad, detail, [v.service for v in bad]

    def _health(self, stack: str, healthy: bool, detail: str) -> None:
        st = self._state(stack)
        if st.healthy is healthy:
            return
        previous, st.healthy = st.healthy, healthy
        self.events.publish(
            Kind.HEALTH_CHANGED,
            f"stack:{stack}",
            HealthChanged(stack=stack, healthy=healthy, previous=previous, detail=detail),
        )
        if self._tg is not None:
            engine = "healthy" if healthy else ("missing" if "nothing" in detail else "unhealthy")
            self._tg.start_soon(self._record_engine, stack, engine, detail)

    async def _record_engine(self, stack: str, engine: str, detail: str) -> None:
        try:
            await anyio.to_thread.run_sync(self.records.set_engine, stack, engine, detail)
        except StoreError as exc:
            log.warning("drift: %s's engine state not recorded: %s", stack, exc)

    async def _drift(self, info: StackInfo, reason: str, detail: str, services: list[str]) -> None:
        action, run = info.on_drift, None
        if reason in ("removed", "changed", "dead", "unhealthy"):
            self._health(info.name, False, detail)
        if action == "redeploy":
            if not self.limiter.allow(info.name, time.monotonic()):
                action = "flap_limit"
            else:
                run = await self._redeploy(info)
                if run is None:
                    action = "alert"
        (log.info if action == "ignore" else log.warning)(
            "drift in stack %s (%s): %s; %s", info.name, reason, detail, action
        )
        self.events.publish(
            Kind.DRIFT,
            f"stack:{info.name}",
            Drift(
                stack=info.name,
                reason=reason,
                detail=detail,
                services=services,
                action=action,
                run=run,
            ),
        )

    async def _redeploy(self, info: StackInfo) -> int | None:
        try:
            admission = await self.reconciler.submit(
                Intent([info.name], "drift", f"drift: redeploy {info.name}")
            )
        except CoreError as exc:
            log.warning("drift: cannot redeploy %s: %s", info.name, exc)
            return None
        return admission.runs.get(info.name)
