"""Running a sync, the one way the API, webhooks and polling all use.

``plan`` reads the sync's files and plans (``plan.made``); ``apply`` applies a plan and then does
what an apply means: the servers are refreshed, stacks the plan deleted are taken down, and the
plan's deploys become one intent (``apply``) for the reconciler. ``run`` plans and applies in one
go (a push or a poll found a new commit); a run asked for while one of the same sync goes queues
exactly one follow-up, which reads the newest files.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from core.deploy.deployer import StackDeployer
from core.events.bus import EventBus
from core.events.model import ChangeDetected, Kind, PlanMade, ResourceApplied
from core.exceptions import CoreError, StoreError
from core.plan.models import Plan
from core.plan.service import SyncService
from core.reconcile.reconciler import Admission, Intent, Reconciler, Refused
from core.store import Store
from core.tasks import TaskOwner

log = logging.getLogger(__name__)


@dataclass
class Applied:
    plan: Plan
    revision: int
    admission: Admission | None = None
    removed: list[str] = field(default_factory=list)
    deploy_error: str = ""
    note: str = ""

    def answer(self) -> dict[str, Any]:
        out: dict[str, Any] = {"revision": self.revision, "removed": self.removed}
        if self.admission is not None:
            out["intent"] = self.admission.intent
            out["runs"] = self.admission.runs
            ids = self.admission.run_ids
            out["run"] = ids[0] if len(ids) == 1 else (ids or None)
        else:
            out["run"] = None
        if self.deploy_error:
            out["deploy_error"] = self.deploy_error
        if self.note:
            out["note"] = self.note
        return out


def publish_plan(events: EventBus, plan: Plan) -> None:
    events.publish(
        Kind.PLAN_MADE,
        f"sync:{plan.sync}",
        PlanMade(
            plan=plan.id,
            sync=plan.sync,
            commit=plan.commit or "",
            counts=plan.counts(),
            deploys=[d.stack for d in plan.deploys],
        ),
    )


def publish_applied(events: EventBus, plan: Plan) -> None:
    for change in plan.changes:
        events.publish(
            Kind.RESOURCE_APPLIED,
            f"{change.kind}:{change.name}",
            ResourceApplied(
                plan=plan.id,
                sync=plan.sync,
                type=change.kind,
                name=change.name,
                action=change.action,
            ),
        )


class SyncRunner:
    def __init__(
        self,
        syncs: SyncService,
        store: Store,
        events: EventBus,
        reconciler: Reconciler | None,
        deployer: StackDeployer | None,
        refresh_servers: Callable[[], Awaitable[object]],
    ) -> None:
        self.syncs = syncs
        self.store = store
        self.events = events
        self.reconciler = reconciler
        self.deployer = deployer
        self.refresh_servers = refresh_servers
        self.tasks = TaskOwner()  # owns what applies start (stacks taken down)
        self._running: set[str] = set()
        self._again: set[str] = set()


    async def plan(self, name: str) -> Plan:
        plan = await anyio.to_thread.run_sync(self.syncs.plan, name)
        publish_plan(self.events, plan)
        return plan

    async def apply(self, name: str, plan_id: str, source: str = "apply") -> Applied:
        plan, revision = await anyio.to_thread.run_sync(self.syncs.apply, name, plan_id)
        publish_applied(self.events, plan)
        applied = Applied(plan, revision)
        await self.refresh_servers()
        if self.reconciler is not None:
            await self.reconciler.desired_changed()
        deleted = [c for c in plan.changes if c.kind == "stack" and c.action == "delete"]
        if deleted and self.deployer is not None:
            if self.tasks.spawn(self._take_down, plan, [c.name for c in deleted]):
                applied.removed = [c.name for c in deleted]
        if plan.deploys:
            if self.reconciler is None:
                applied.note = "nothing deployed: the core has no private_key (deploys are off)"
            else:
                try:
                    applied.admission = await self.reconciler.submit(
                        Intent(
                            [d.stack for d in plan.deploys],
                            source,
                            f"{source} {plan.id} (sync {name})",
                        )
                    )
                except (Refused, StoreError) as exc:
                    log.warning(
                        "sync %s: plan %s: the deploys did not start: %s", name, plan.id, exc
                    )
                    applied.deploy_error = str(exc)
        return applied

    async def run(self, name: str, apply: bool, source: str) -> None:
        """Plan (and apply) a sync; a run asked for while one goes queues one follow-up."""
        if name in self._running:
            self._again.add(name)  # one follow-up run, at whatever is newest then
            return
        self._running.add(name)
        try:
            while True:
                self._again.discard(name)
                try:
                    previous = await anyio.to_thread.run_sync(self.store.sync_commit, name)
                    plan = await anyio.to_thread.run_sync(self.syncs.plan, name)
                    fetch = self.syncs.fetch_seconds.get(name, 0.0)
                    self.events.publish(
                        Kind.CHANGE_DETECTED,
                        f"sync:{name}",
                        ChangeDetected(
                            source=source,
                            sync=name,
                            commit=plan.commit or "",
                            previous=previous or "",
                            fetch_ms=round(fetch * 1000, 2),
                        ),
                    )
                    publish_plan(self.events, plan)
                    if apply and (plan.changes or plan.deploys):
                        await self.apply(name, plan.id, source)
                except CoreError as exc:
                    log.warning("%s sync %s: %s", source, name, exc)
                if name not in self._again:
                    break
        finally:
            self._running.discard(name)

    async def _take_down(self, plan: Plan, names: list[str]) -> None:
        assert self.deployer is not None
        by_name = {c.name: c for c in plan.changes}
        stored = await anyio.to_thread.run_sync(self.store.resources)
        for name in names:
            change = by_name[name]
            old: dict[str, Any] = {}
            for changed in change.fields:
                if changed.path == "config" and isinstance(changed.old, dict):
                    old = {"config": changed.old}
            swarm = str(old.get("config", {}).get("swarm", ""))
            swarm_res = stored.get(("swarm", swarm))
            servers = (
                list(swarm_res.config.get("config", {}).get("servers", [])) if swarm_res else []
            )
            message = await self.deployer.take_down(name, old, servers)
            log.info("%s", message)
