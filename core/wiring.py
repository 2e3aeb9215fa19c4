"""The composition root: the one place that makes the core's parts and wires them together.

``build`` makes every part with what it needs passed in (nothing reaches back for a part later);
``run`` starts them in order in one task group and stops them together:

1. what an earlier process left open is closed as ``interrupted`` (with events), before any new
   deploy can start;
2. the periphery pool, the reconciler (which owns every deploy), the sync runner, the webhook
   listener, the alerts (their sender and the watch that follows the bus), the connection hooks,
   drift and the image update checker start, each reporting readiness;
3. the servers are read from the applied state, polling starts (``poll_interval``);
4. Komodo's daily ``auto_prune`` of the servers that ask for it (core/deploy/prune.py);
5. with ``reconcile = "auto"``, a reconcile pass deploys what is not converged (interrupted,
   skipped, failed past its backoff, never deployed, changed), then one every
   ``reconcile_interval`` seconds;
6. procedures (core/automation): the runner (after closing the runs an earlier process left
   open) and the schedules, which report the times missed while the core was down.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread
from aiohttp import web

from core.agents import endpoints_from_store
from core.alerts.center import Alerts
from core.alerts.sender import AlertSender, DeliverySettings
from core.alerts.watch import AlertWatch
from core.api.http import session_of
from core.automation.backup import Backups
from core.automation.keys import KeyRotation
from core.automation.records import ProcedureRecords
from core.automation.runner import ProcedureRunner
from core.automation.scheduler import Scheduler
from core.automation.steps import Steps, no_global_auto_update
from core.config import CoreConfig
from core.connections import Connections
from core.deploy.deployer import StackDeployer
from core.deploy.prune import run_prune_loop
from core.drift import DriftWatch
from core.events.bus import EventBus
from core.events.stream import EventStream
from core.parts import Core
from core.plan.service import SyncService
from core.poller import Poller
from core.pool import PeripheryPool, PoolSettings
from core.reconcile.desired import AppliedState
from core.reconcile.reconciler import Reconciler
from core.resources.models import ServerConfig, config_from_canonical
from core.store import Store
from core.store.deploys import DeployRecords
from core.store.intents import Heads, IntentLog
from core.syncing import SyncRunner
from core.updates.checker import UpdateChecker, global_auto_update
from core.web.sessions import SessionFile, Sessions
from core.webhooks.listener import WebhookListener
from protocol.keys import PrivateKey
from protocol.transport import CoreChannel

log = logging.getLogger(__name__)


def build(
    config: CoreConfig,
    store: Store,
    events: EventBus,
    private_key: PrivateKey | None,
    pool_settings: PoolSettings | None = None,
) -> Core:
    records = DeployRecords(store)
    intents = IntentLog(store)
    heads = Heads(store)
    syncs = SyncService(config, store)
    desired = AppliedState(
        config,
        store,
        records,
        heads,
        syncs.load_applied,
        syncs.repository_of,
        syncs.mirror_of,
        syncs.fingerprint,
    )
    syncs.deploy_inputs = desired.deploy_inputs
    sessions = Sessions(
        config.api_tokens,
        config.viewer_tokens,
        SessionFile(Path(config.data_dir) / "sessions.db"),
        ttl=config.session_ttl,
        limit=config.max_sessions,
    )

    def session_ok(request: web.Request) -> bool:
        return session_of(request, sessions) is not None

    stream = EventStream(
        events,
        [*config.api_tokens, *config.viewer_tokens],
        config.event_origins,
        config.event_queue,
        send_timeout=config.event_send_timeout,
        session_ok=session_ok,
    )
    pool = PeripheryPool(private_key, pool_settings) if private_key is not None else None

    async def refresh_servers() -> list[str]:
        if pool is None:
            return []
        endpoints, problems = await anyio.to_thread.run_sync(endpoints_from_store, config, store)
        pool.set_servers(endpoints)
        return problems

    deployer = StackDeployer(config, records, pool, events) if pool is not None else None
    reconciler = (
        Reconciler(desired, deployer, records, intents, events, parallel=config.deploy_parallel)
        if deployer is not None
        else None
    )
    runner = SyncRunner(syncs, store, events, reconciler, deployer, refresh_servers)
    webhooks = WebhookListener(config, store, events, runner, reconciler, records, heads, pool)
    drift = (
        DriftWatch(config, store, records, events, pool, reconciler)
        if pool is not None and reconciler is not None
        else None
    )
    updates = None
    if pool is not None:  # image updates: the agents say what runs, the registries what is new
        updates = UpdateChecker(config, store, records, pool, reconciler, events)
    alerts, alert_watch = None, None
    if pool is not None:  # a core that talks to no agent deploys nothing: nothing to alert
        sender = AlertSender(
            events,
            DeliverySettings(
                timeout=config.alert_timeout,
                retries=config.alert_retries,
                backoff=config.alert_backoff,
                queue=config.alert_queue,
            ),
        )
        alerts = Alerts(events, sender)
        alert_watch = AlertWatch(config, store, alerts, syncs.load_applied)
    # Procedures and their schedules (core/automation): the executions done with the parts
    # above (GlobalAutoUpdate: the image update check of core/updates).
    backups = Backups(store.path, Path(config.data_dir), config.max_backups, events)
    procedure_records = ProcedureRecords(store)
    keys = KeyRotation(store, procedure_records, pool, events) if pool is not None else None
    steps = Steps(
        config,
        store,
        desired,
        heads,
        runner,
        reconciler,
        pool,
        backup=backups.backup,
        global_auto_update=(
            partial(global_auto_update, updates) if updates is not None else no_global_auto_update
        ),
        **({"rotate_keys": keys.rotate_all} if keys is not None else {}),
    )
    procedures = ProcedureRunner(store, procedure_records, events, steps)
    scheduler = Scheduler(
        procedure_records, events, procedures, config.timezone, revision=store.revision
    )
    webhooks.run_procedure = procedures.start
    return Core(
        config=config,
        store=store,
        events=events,
        stream=stream,
        records=records,
        intents=intents,
        heads=heads,
        syncs=syncs,
        desired=desired,
        runner=runner,
        webhooks=webhooks,
        refresh_servers=refresh_servers,
        pool=pool,
        deployer=deployer,
        reconciler=reconciler,
        drift=drift,
        updates=updates,
        alerts=alerts,
        alert_watch=alert_watch,
        procedures=procedures,
        scheduler=scheduler,
        keys=keys,
        sessions=sessions,
    )


async def run(
    core: Core, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Run every part until cancelled (see the module doc for the order)."""
    config = core.config
    async with anyio.create_task_group() as tg:
        if core.reconciler is not None:
            await core.reconciler.close_interrupted(
                f"the core (pid before {os.getpid()}) stopped before it ended"
            )
        await tg.start(core.runner.tasks.run)
        await tg.start(core.webhooks.run)
        if core.alerts is not None and core.alert_watch is not None:  # before what raises them
            await tg.start(core.alerts.sender.run)
            await tg.start(core.alert_watch.run)
        if core.procedures is not None:
            await tg.start(core.procedures.run)
        if core.pool is not None and core.reconciler is not None and core.deployer is not None:
            assert core.drift is not None
            reconciler = core.reconciler

            async def back(server: str) -> None:
                """A periphery (re)connected: deploys that failed for want of it go on."""
                try:
                    await reconciler.reconcile_once(core.desired, "reconnect")
                except Exception as exc:  # logged; the periodic pass tries again
                    log.warning("reconcile after %s reconnected: %s", server, exc)

            connections = Connections(
                config,
                core.store,
                core.records,
                core.events,
                core.reconciler,
                core.deployer,
                core.drift,
                on_back=back if config.reconcile == "auto" else None,
            )
            core.pool.on_connected = connections.connected
            if core.keys is not None:  # a rotation left pending is confirmed by a connection
                rotation, connected = core.keys, connections.connected

                async def on_connected(server: str, channel: CoreChannel) -> None:
                    await rotation.confirm(server, channel)
                    await connected(server, channel)

                core.pool.on_connected = on_connected
            core.pool.on_lost = connections.lost
            await tg.start(connections.run)
            await tg.start(core.drift.run)
            await tg.start(core.pool.run)
            await tg.start(core.reconciler.run)
        if core.updates is not None:  # image updates, every image_poll_interval
            await tg.start(core.updates.run)
        await core.refresh_servers()
        if core.pool is not None:
            pool = core.pool

            async def servers() -> dict[str, ServerConfig]:
                """The servers' configs, for Komodo's daily auto_prune (core.deploy.prune)."""
                stored = await anyio.to_thread.run_sync(core.store.resources)
                return {
                    name: config_from_canonical("server", res.config.get("config", {}))
                    for (kind, name), res in stored.items()
                    if kind == "server"
                }

            async def channel(server: str) -> CoreChannel:
                return await pool.channel(server, 15.0)

            tg.start_soon(run_prune_loop, servers, channel)
        if config.poll_interval > 0:
            poller = Poller(
                config,
                core.store,
                core.runner,
                core.reconciler,
                core.records,
                core.heads,
                core.pool,
            )
            tg.start_soon(poller.run, config.poll_interval)
        if core.reconciler is not None and config.reconcile == "auto":
            tg.start_soon(_reconcile_loop, core)
        if core.scheduler is not None:
            await tg.start(core.scheduler.run)
        task_status.started()
        await anyio.sleep_forever()


async def _reconcile_loop(core: Core) -> None:
    """``reconcile = "auto"``: deploy what is not converged, at start and then periodically."""
    reconciler = core.reconciler
    assert reconciler is not None
    source = "startup"
    while True:
        try:
            await reconciler.reconcile_once(core.desired, source)
        except Exception as exc:  # a pass that fails is logged; the next one tries again
            log.warning("reconcile (%s): %s", source, exc)
        source = "reconcile"
        await anyio.sleep(core.config.reconcile_interval)
