"""What the core does when a periphery connects, and when it is lost.

On connect: say so (``periphery.connected``); have drift look at the server's stacks (nothing
sent an event while it was away); converge the core's own swarm secrets on a manager; let the
reconciler go on with what failed for want of the server; and follow the engine's events for as
long as the channel lives (``docker.event``, ``docker.engine``). (The agent's highest fencing
token is learned by each deploy before it takes one: core/deploy/deployer.py.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from core.config import CoreConfig
from core.deploy.deployer import StackDeployer
from core.deploy.secrets import ensure_versions, plan_secrets, wanted_versions
from core.drift import DriftWatch
from core.events.bus import EventBus
from core.events.model import (
    DockerEngine,
    DockerEventData,
    Kind,
    PeripheryConnected,
    PeripheryLost,
)
from core.exceptions import CoreError, SecretsUnavailable
from core.reconcile.reconciler import Intent, Reconciler
from core.store import Store
from core.store.deploys import DeployRecords
from core.tasks import TaskOwner
from protocol.exceptions import ChannelError
from protocol.messages import DockerEvents, WatchDocker
from protocol.transport import CoreChannel

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 10.0


class Connections(TaskOwner):
    def __init__(
        self,
        config: CoreConfig,
        store: Store,
        records: DeployRecords,
        events: EventBus,
        reconciler: Reconciler,
        deployer: StackDeployer,
        drift: DriftWatch,
        on_back: Callable[[str], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.records = records
        self.events = events
        self.reconciler = reconciler
        self.deployer = deployer
        self.drift = drift
        self.on_back = on_back  # a server (re)connected: what failed for want of it may go on


    async def connected(self, server: str, channel: CoreChannel) -> None:
        """While the channel lives: say so, then follow the server's Docker events."""
        self.events.publish(
            Kind.PERIPHERY_CONNECTED,
            f"server:{server}",
            PeripheryConnected(server=server, key=channel.peer.public_key.fingerprint()),
        )
        self.drift.sweep(server)
        if self.on_back is not None:
            self.spawn(self.on_back, server)
        if self.config.swarm_secrets:
            self.spawn(self.converge_secrets, server, channel)

        def on_events(frame: DockerEvents) -> None:
            for ev in frame.events:
                info = self.drift.managed.stack_of(ev.type, ev.name, ev.project)
                self.events.publish(
                    Kind.DOCKER,
                    f"stack:{info.name}" if info is not None else f"server:{server}",
                    DockerEventData(
                        server=server,
                        type=ev.type,
                        action=ev.action,
                        actor=ev.actor,
                        name=ev.name,
                        stack=info.name if info is not None else "",
                        service=ev.service,
                        detail=dict(ev.detail),
                    ),
                )
            if frame.engine:
                self.events.publish(
                    Kind.DOCKER_ENGINE,
                    f"server:{server}",
                    DockerEngine(server=server, state=frame.engine, message=frame.message),
                )

        try:
            async with channel.call(WatchDocker(), on_events=on_events) as call:
                result = await call.wait()
            if result.error is not None:
                log.warning("server %s: no Docker events: %s", server, result.error.message)
        except ChannelError as exc:
            log.info("server %s: Docker events ended: %s", server, exc)

    def lost(self, server: str, reason: str) -> None:
        self.events.publish(
            Kind.PERIPHERY_LOST, f"server:{server}", PeripheryLost(server=server, reason=reason)
        )

    async def converge_secrets(self, server: str, channel: CoreChannel) -> list[int]:
        """The core's own swarm secrets (``[swarm_secrets]``) on a manager that connected: the
        current versions made where missing, and the stacks whose services still use an older
        version redeployed (an intent, ``secrets``; the run then removes the versions no
        service uses). Returns the runs that carry them."""
        stored = await anyio.to_thread.run_sync(self.store.resources)
        managers = {
            str(m)
            for (kind, _), res in stored.items()
            if kind == "swarm"
            for m in res.config.get("config", {}).get("servers", [])
        }
        values = self.deployer.core_secret_values()
        if server not in managers or not values:
            return []
        try:
            _, infos = await ensure_versions(channel, values)
        except SecretsUnavailable as exc:
            log.warning("swarm secrets on %s: %s", server, exc)
            return []
        stale = plan_secrets(wanted_versions(values), infos).stale_stacks
        by_docker = {
            str(res.config.get("config", {}).get("project_name") or name): name
            for (kind, name), res in stored.items()
            if kind == "stack"
        }
        names = sorted(by_docker[d] for d in stale if d in by_docker)
        if not names:
            return []
        log.info("swarm secrets changed: redeploying %s", ", ".join(names))
        try:
            admission = await self.reconciler.submit(
                Intent(names, "secrets", "swarm secret changed")
            )
        except CoreError as exc:
            log.warning("swarm secrets changed, but %s: %s", ", ".join(names), exc)
            return []
        return admission.run_ids
