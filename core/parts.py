"""The core's parts, as the composition root (``core/wiring.py``) made them: what the HTTP API
reaches state through, the one way (``core/api``). Each part was given what it needs when it was
made; none reaches back into this bag."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.alerts.center import Alerts
from core.alerts.watch import AlertWatch
from core.automation.keys import KeyRotation
from core.automation.runner import ProcedureRunner
from core.automation.scheduler import Scheduler
from core.config import CoreConfig
from core.deploy.deployer import StackDeployer
from core.drift import DriftWatch
from core.events.bus import EventBus
from core.events.stream import EventStream
from core.plan.service import SyncService
from core.pool import PeripheryPool
from core.reconcile.desired import AppliedState
from core.reconcile.reconciler import Reconciler
from core.store import Store
from core.store.deploys import DeployRecords
from core.store.intents import Heads, IntentLog
from core.syncing import SyncRunner
from core.updates.checker import UpdateChecker
from core.web.sessions import Sessions
from core.webhooks.listener import WebhookListener


@dataclass
class Core:
    config: CoreConfig
    store: Store
    events: EventBus
    stream: EventStream
    records: DeployRecords
    intents: IntentLog
    heads: Heads
    syncs: SyncService
    desired: AppliedState
    runner: SyncRunner
    webhooks: WebhookListener
    refresh_servers: Callable[[], Awaitable[list[str]]]
    # Without a private key the core plans and applies but talks to no periphery: these are None.
    pool: PeripheryPool | None = None
    deployer: StackDeployer | None = None
    reconciler: Reconciler | None = None
    drift: DriftWatch | None = None
    updates: UpdateChecker | None = None  # image updates (poll_for_updates, auto_update)
    alerts: Alerts | None = None  # alerters: raise_alert, procedure_failed, schedule_missed
    alert_watch: AlertWatch | None = None
    procedures: ProcedureRunner | None = None
    scheduler: Scheduler | None = None
    keys: KeyRotation | None = None
    # The dashboard's browser sessions (core/web); None: no sign-in from a browser.
    sessions: Sessions | None = None
