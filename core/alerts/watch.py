"""Alerts from the event bus: :class:`AlertWatch` follows it like ``core/drift.py`` does (its own
bounded subscription; nothing on a deploy's path calls it or waits for it) and raises Komodo's
alerts through :class:`~core.alerts.center.Alerts`:

- ``deploy.finished`` failed → ``StackDeployFailed``; healthy after an ``auto_update``'s
  ``update.redeploy`` → ``StackAutoUpdated`` (Komodo sends it when that deploy succeeds);
- ``health.changed`` to unhealthy (not the first state a stack is seen in: Komodo "Don't alert if
  prev None"), and back to healthy after an alert → ``StackStateChange`` (``to``: ``unhealthy``,
  or ``down`` when nothing of it runs; ``running`` when healthy again; from a failed deploy too);
- ``drift`` of a stack changed by hand (``removed``, ``changed``) with ``on_drift`` other than
  ``ignore`` → ``StackDrift`` (its state change is a ``StackStateChange`` of its own);
- ``periphery.lost`` and no ``periphery.connected`` within ``agent_lost_grace`` →
  ``ServerUnreachable`` (``CRITICAL``); connected again after that → the same, ``OK``;
- ``update.available`` without a redeploy → ``StackImageUpdateAvailable`` (Komodo alerts only
  when ``auto_update`` does not follow);
- ``procedure.finished`` failed → ``ProcedureFailed`` (with the procedure's ``failure_alert``,
  Komodo's ``api/execute/procedure.rs``); ``schedule.fired`` that started a run →
  ``ScheduleRun`` (with ``schedule_alert``, Komodo's ``schedule.rs``); ``schedule.missed`` →
  ``ScheduleMissed`` (with ``failure_alert``: a run that did not happen).

A stack's ``send_alerts = false`` (Komodo: "Whether to send StackStateChange alerts") holds its
state-change, deploy-failure and drift alerts; a server's ``send_unreachable_alerts = false`` or
one of its ``maintenance_windows`` holds its ``ServerUnreachable``. The applied ``[[alerter]]``
entries are read again after each apply, their URLs interpolated (``[[NAME]]`` from the sync's
variables and the core's ``[secrets]``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from core.alerts import model as m
from core.alerts.center import Alerts
from core.alerts.routing import Alerter
from core.config import CoreConfig
from core.deploy.jobs import values_of
from core.events.bus import Subscription
from core.events.model import Filter, Kind
from core.exceptions import CoreError
from core.resources.models import (
    AlerterConfig,
    MaintenanceWindow,
    ProcedureConfig,
    ResourceSet,
    ServerConfig,
    StackConfig,
    config_from_canonical,
)
from core.resources.variables import Values
from core.resources.windows import in_maintenance
from core.store import Store

log = logging.getLogger(__name__)

KINDS = (
    "procedure.finished",
    "schedule.fired",
    "schedule.missed",
    "deploy.finished",
    "health.changed",
    "drift",
    "periphery",
    "update.available",
    "update.redeploy",
    "resource",
)
HAND_DRIFT = ("removed", "changed")


@dataclass(frozen=True)
class StackFacts:
    send_alerts: bool = True
    server: str = ""
    swarm: str = ""


@dataclass(frozen=True)
class ProcedureFacts:
    failure_alert: bool = True
    schedule_alert: bool = True


@dataclass(frozen=True)
class ServerFacts:
    send_unreachable_alerts: bool = True
    windows: tuple[MaintenanceWindow, ...] = ()


LoadSync = Callable[[str], ResourceSet]


def alerters_from(
    stored: dict[tuple[str, str], Any], values_for: Callable[[str], Values]
) -> list[Alerter]:
    """The applied ``[[alerter]]`` entries with their URLs interpolated."""
    out = []
    for (kind, name), res in sorted(stored.items()):
        if kind != "alerter":
            continue
        try:
            cfg: AlerterConfig = config_from_canonical("alerter", res.config.get("config", {}))
        except CoreError as exc:
            log.warning("alerter %s: %s", name, exc)
            continue
        url, error = cfg.endpoint.params.get("url", ""), ""
        if "[[" in url:
            try:
                url = values_for(res.sync).interpolate(url, where=f"alerter {name!r} url")
            except CoreError as exc:
                url, error = "", str(exc)
        out.append(Alerter(name, cfg, url, cfg.endpoint.params.get("email", ""), error))
    return out


class AlertWatch:
    def __init__(
        self,
        config: CoreConfig,
        store: Store,
        alerts: Alerts,
        load_sync: LoadSync | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.alerts = alerts
        self.events = alerts.events
        self.load_sync = load_sync
        self.grace = config.agent_lost_grace
        self.stacks: dict[str, StackFacts] = {}
        self.servers: dict[str, ServerFacts] = {}
        self.procedures: dict[str, ProcedureFacts] = {}
        self._alerted_state: dict[str, str] = {}  # stack -> the state its last alert said
        self._updates: dict[tuple[str, int], list[str]] = {}  # (stack, run) -> images
        self._lost: dict[str, int] = {}  # server -> generation of its pending loss check
        self._unreachable: set[str] = set()  # servers alerted as unreachable
        self._generation = 0
        self._tg: anyio.abc.TaskGroup | None = None

    # ------------------------------------------------------------------------------ state

    async def refresh(self) -> None:
        stored = await anyio.to_thread.run_sync(self.store.resources)
        stacks, servers, procedures = {}, {}, {}
        for (kind, name), res in stored.items():
            raw = res.config.get("config", {})
            try:
                if kind == "stack":
                    cfg: StackConfig = config_from_canonical("stack", raw)
                    stacks[name] = StackFacts(cfg.send_alerts, cfg.server, cfg.swarm)
                elif kind == "server":
                    scfg: ServerConfig = config_from_canonical("server", raw)
                    servers[name] = ServerFacts(
                        scfg.send_unreachable_alerts, tuple(scfg.maintenance_windows)
                    )
                elif kind == "procedure":
                    pcfg: ProcedureConfig = config_from_canonical("procedure", raw)
                    procedures[name] = ProcedureFacts(pcfg.failure_alert, pcfg.schedule_alert)
            except CoreError:
                continue
        self.stacks, self.servers, self.procedures = stacks, servers, procedures
        alerters = await anyio.to_thread.run_sync(alerters_from, stored, self._values)
        self.alerts.set_alerters(alerters)

    def _values(self, sync: str) -> Values:
        """The values an alerter's URL may name: its sync's variables, the core's secrets."""
        rs = ResourceSet()
        if self.load_sync is not None:
            try:
                rs = self.load_sync(sync)
            except CoreError as exc:
                log.warning("alerters of sync %s: its files: %s", sync, exc)
        return values_of(rs, self.config.secrets)

    # ------------------------------------------------------------------------------ running

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with self.events.subscribe(Filter(kinds=KINDS), limit=10_000) as sub:
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
            stale = False
            for event in subscriber.take(256):
                if event.kind == Kind.RESOURCE_APPLIED:
                    stale = True
                    continue
                try:
                    self.on_event(event.kind, event.data(), event.time)
                except Exception:
                    log.exception("alerts: event %s", event.id)
            if stale:
                try:
                    await self.refresh()
                except Exception:  # the next apply tries again
                    log.exception("alerts: reading the applied alerters")
            lagged = subscriber.take_lagged()
            if lagged is not None:
                log.warning("alerts: missed %s event(s) (busy core)", lagged.count)
            if not subscriber.queue:
                await subscriber.wait()

    # ------------------------------------------------------------------------------ events

    def on_event(self, kind: str, data: dict[str, Any], at: float) -> None:
        match kind:
            case Kind.DEPLOY_FINISHED:
                self._deploy_finished(data)
            case Kind.HEALTH_CHANGED:
                self._health_changed(data)
            case Kind.DRIFT:
                self._drift(data)
            case Kind.PERIPHERY_LOST:
                self._server_lost(str(data["server"]), str(data.get("reason", "")))
            case Kind.PERIPHERY_CONNECTED:
                self._server_back(str(data["server"]))
            case Kind.UPDATE_AVAILABLE:
                if not data.get("redeploy"):
                    self._stack_alert(
                        m.STACK_IMAGE_UPDATE_AVAILABLE,
                        m.OK,
                        str(data["stack"]),
                        {"service": data["service"], "image": data["image"]},
                        gate=False,
                    )
            case Kind.UPDATE_REDEPLOY:
                key = (str(data["stack"]), int(data["run"]))
                self._updates[key] = [str(i) for i in data.get("images", [])]
            case Kind.PROCEDURE_FINISHED:  # core/automation's events
                name = str(data["procedure"])
                if data.get("status") == "failed" and self._procedure(name).failure_alert:
                    self.alerts.procedure_failed(name, str(data.get("message", "")))
            case Kind.SCHEDULE_FIRED:
                name = str(data["procedure"])
                started = str(data.get("outcome", "")).startswith("started")
                if started and self._procedure(name).schedule_alert:
                    self.alerts.schedule_run(name)
            case Kind.SCHEDULE_MISSED:
                name = str(data["procedure"])
                if self._procedure(name).failure_alert:
                    count = int(data.get("count", 1))
                    more = " or more" if data.get("more") else ""
                    self.alerts.schedule_missed(
                        name,
                        float(data.get("first", at)),
                        f"{count}{more} run(s) missed while the core was down",
                    )

    def _procedure(self, name: str) -> ProcedureFacts:
        return self.procedures.get(name, ProcedureFacts())

    def _stack_alert(
        self, type_: str, level: str, stack: str, fields: dict[str, Any], *, gate: bool = True
    ) -> None:
        facts = self.stacks.get(stack, StackFacts())
        if gate and not facts.send_alerts:
            return
        ts = self.alerts.now_ms()
        data: dict[str, Any] = {
            "id": stack,
            "name": stack,
            "server_id": None if facts.swarm else (facts.server or None),
            "server_name": None if facts.swarm else (facts.server or None),
            "swarm_id": facts.swarm or None,
            "swarm_name": facts.swarm or None,
            **fields,
        }
        self.alerts.raise_alert(
            m.Alert(
                ts=ts,
                level=level,
                target=m.Target("Stack", stack),
                type=type_,
                data=data,
                resolved_ts=ts,
            )
        )

    def _deploy_finished(self, data: dict[str, Any]) -> None:
        stack, status = str(data["stack"]), str(data["status"])
        images = self._updates.pop((stack, int(data.get("run", 0))), None)
        if status == "failed":
            self._stack_alert(
                m.STACK_DEPLOY_FAILED,
                m.CRITICAL,
                stack,
                {"step": data.get("step", ""), "reason": data.get("message", "")},
            )
            if self.stacks.get(stack, StackFacts()).send_alerts:
                self._alerted_state[stack] = "unhealthy"
        elif status == "healthy":
            if images is not None:
                self._stack_alert(m.STACK_AUTO_UPDATED, m.OK, stack, {"images": images}, gate=False)
            self._recovered(stack)

    def _recovered(self, stack: str) -> None:
        previous = self._alerted_state.pop(stack, None)
        if previous is not None:
            self._stack_alert(
                m.STACK_STATE_CHANGE, m.OK, stack, {"from": previous, "to": "running"}
            )

    def _health_changed(self, data: dict[str, Any]) -> None:
        stack = str(data["stack"])
        if data.get("healthy"):
            self._recovered(stack)
            return
        if data.get("previous") is None or stack in self._alerted_state:
            return  # the first state seen (Komodo: no alert), or said already
        detail = str(data.get("detail", ""))
        to = "down" if "nothing" in detail else "unhealthy"
        if not self.stacks.get(stack, StackFacts()).send_alerts:
            return
        self._alerted_state[stack] = to
        self._stack_alert(
            m.STACK_STATE_CHANGE, m.WARNING, stack, {"from": "running", "to": to, "detail": detail}
        )

    def _drift(self, data: dict[str, Any]) -> None:
        if data.get("reason") not in HAND_DRIFT or data.get("action") == "ignore":
            return
        self._stack_alert(
            m.STACK_DRIFT,
            m.WARNING,
            str(data["stack"]),
            {
                "reason": data.get("reason"),
                "detail": data.get("detail", ""),
                "services": data.get("services", []),
                "action": data.get("action", ""),
            },
        )

    # ------------------------------------------------------------------------------ agents

    def _server_lost(self, server: str, reason: str) -> None:
        self._generation += 1
        self._lost[server] = self._generation
        if self._tg is not None:
            self._tg.start_soon(self._lost_later, server, self._generation, reason)

    def _server_back(self, server: str) -> None:
        self._lost.pop(server, None)
        if server in self._unreachable:
            self._unreachable.discard(server)
            self._server_alert(server, m.OK, "")

    async def _lost_later(self, server: str, generation: int, reason: str) -> None:
        await anyio.sleep(self.grace)
        if self._lost.get(server) != generation:
            return  # back (or lost again since: that loss has its own check)
        del self._lost[server]
        facts = self.servers.get(server, ServerFacts())
        if not facts.send_unreachable_alerts:
            return
        now = dt.datetime.now(dt.UTC)
        if in_maintenance(facts.windows, now):
            log.info("server %s unreachable during its maintenance window: no alert", server)
            return
        self._unreachable.add(server)
        self._server_alert(server, m.CRITICAL, reason)

    def _server_alert(self, server: str, level: str, reason: str) -> None:
        ts = self.alerts.now_ms()
        critical = level == m.CRITICAL
        self.alerts.raise_alert(
            m.Alert(
                ts=ts,
                level=level,
                target=m.Target("Server", server),
                type=m.SERVER_UNREACHABLE,
                data={
                    "id": server,
                    "name": server,
                    "region": None,
                    "err": {"error": reason, "trace": []} if critical and reason else None,
                },
                resolved=not critical,
                resolved_ts=None if critical else ts,
            )
        )
