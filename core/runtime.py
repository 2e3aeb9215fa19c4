"""The core's long-lived parts, owned by one task group: the periphery pool and the deploys.

``CoreRuntime.run`` starts them; ``CoreRuntime.setup`` is a ``build_app`` setup function that
adds the periphery endpoint (``/ws/periphery``) and the deploy API:

- ``POST /api/stacks/{name}/deploy``: deploy one stack and nothing else (202, the run's id);
- ``GET /api/runs/{id}``: a run and its deploys; ``GET /api/deploys/{id}``: one deploy and its
  steps; ``GET /api/deploys/{id}/log?after=SEQ``: its output, in order;
- ``GET /api/servers``: the known servers and which are connected.

After an apply, the plan's deploy list runs through the graph, and stacks the apply deleted are
taken down.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import msgspec
from aiohttp import web

from core.agents import endpoints_from_store
from core.app import AFTER_APPLY, STORE, SYNCS, bearer_ok, error_response, json_response
from core.config import CoreConfig
from core.deploy.prune import run_prune_loop
from core.deploy.service import DeployRefused, DeployService
from core.drift import DriftWatch
from core.events.bus import EventBus
from core.events.model import (
    DockerEngine,
    DockerEventData,
    Kind,
    PeripheryConnected,
    PeripheryLost,
)
from core.exceptions import ConfigError, CoreError
from core.listener import Listener
from core.metrics import render as render_metrics
from core.plan.models import Plan
from core.plan.service import SyncService
from core.poller import Poller
from core.pool import PeripheryPool, PoolSettings
from core.resources.models import ServerConfig, config_from_canonical
from core.store import Store
from protocol.exceptions import ChannelError
from protocol.keys import PrivateKey
from protocol.messages import DeployMode, DockerEvents, HealthGateReport, StackState, WatchDocker
from protocol.transport import CoreChannel

log = logging.getLogger(__name__)


class CoreRuntime:
    def __init__(
        self,
        config: CoreConfig,
        store: Store,
        private_key: PrivateKey,
        pool_settings: PoolSettings | None = None,
        *,
        events: EventBus | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.events = events if events is not None else EventBus(None)
        self.pool = PeripheryPool(private_key, pool_settings)
        self.pool.on_connected = self._on_connected
        self.pool.on_lost = self._on_lost
        self.deploys = DeployService(config, store, self.pool, events=self.events)
        self.listener = Listener(self)
        self.poller = Poller(self)
        self.drift = DriftWatch(self)
        self._tg: anyio.abc.TaskGroup | None = None
        self._app: web.Application | None = None

    @property
    def syncs(self) -> SyncService:
        assert self._app is not None, "the app is not set up"
        return self._app[SYNCS]

    @property
    def task_group(self) -> anyio.abc.TaskGroup | None:
        """Where work started by requests runs (None before start and after stop)."""
        return self._tg

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await tg.start(self.pool.run)
            await tg.start(self.deploys.run)
            await tg.start(self.drift.run)
            tg.start_soon(run_prune_loop, self._prune_servers, self._prune_channel)
            await self.refresh_servers()
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    async def _prune_servers(self) -> dict[str, ServerConfig]:
        """The servers' configs, for Komodo's daily auto_prune (core.deploy.prune)."""
        stored = await anyio.to_thread.run_sync(self.store.resources)
        return {
            name: config_from_canonical("server", res.config.get("config", {}))
            for (kind, name), res in stored.items()
            if kind == "server"
        }

    async def _prune_channel(self, server: str) -> CoreChannel:
        return await self.pool.channel(server, 15.0)

    async def refresh_servers(self) -> list[str]:
        endpoints, problems = await anyio.to_thread.run_sync(
            endpoints_from_store, self.config, self.store
        )
        self.pool.set_servers(endpoints)
        return problems

    # ------------------------------------------------------------------- peripheries

    async def _on_connected(self, server: str, channel: CoreChannel) -> None:
        """While the channel lives: say so, then follow the server's Docker events."""
        peer = channel.peer
        self.events.publish(
            Kind.PERIPHERY_CONNECTED,
            f"server:{server}",
            PeripheryConnected(server=server, key=peer.public_key.fingerprint()),
        )
        self.drift.sweep(server)
        if self.config.swarm_secrets and self._tg is not None:
            self._tg.start_soon(self.converge_secrets, server, channel)

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

    async def converge_secrets(self, server: str, channel: CoreChannel) -> list[int]:
        """The core's own swarm secrets (``[swarm_secrets]``) on a manager that connected: the
        current versions made where missing, and the stacks whose services still use an older
        version redeployed (each run then removes the versions no service uses). Returns the
        runs started."""
        from core.deploy.secrets import ensure_versions, plan_secrets, wanted_versions
        from core.exceptions import SecretsUnavailable

        stored = await anyio.to_thread.run_sync(self.store.resources)
        managers = {
            str(m)
            for (kind, _), res in stored.items()
            if kind == "swarm"
            for m in res.config.get("config", {}).get("servers", [])
        }
        values = self.deploys.core_secret_values()
        if server not in managers or not values:
            return []
        try:
            _, infos = await ensure_versions(channel, values)
        except SecretsUnavailable as exc:
            log.warning("swarm secrets on %s: %s", server, exc)
            return []
        stale = plan_secrets(wanted_versions(values), infos).stale_stacks
        by_docker = {
            str(res.config.get("config", {}).get("project_name") or name): (name, res.sync)
            for (kind, name), res in stored.items()
            if kind == "stack"
        }
        by_sync: dict[str, list[str]] = {}
        for docker_name in stale:
            if docker_name in by_docker and by_docker[docker_name][0] not in self.deploys.running():
                name, sync = by_docker[docker_name]
                by_sync.setdefault(sync, []).append(name)
        runs = []
        for sync, names in sorted(by_sync.items()):
            log.info("swarm secrets changed: redeploying %s", ", ".join(names))
            try:
                rs, _ = await anyio.to_thread.run_sync(self.syncs.load, sync)
                runs.append(await self.deploys.start(rs, names, "swarm secret changed"))
            except CoreError as exc:
                log.warning("swarm secrets changed, but %s: %s", ", ".join(names), exc)
        return runs

    def _on_lost(self, server: str, reason: str) -> None:
        self.events.publish(
            Kind.PERIPHERY_LOST, f"server:{server}", PeripheryLost(server=server, reason=reason)
        )

    # ------------------------------------------------------------------------------ app

    def setup(self, app: web.Application) -> None:
        app[RUNTIME] = self
        self._app = app
        if self.config.poll_interval > 0:
            app.on_startup.append(self._start_polling)
        app.router.add_get("/ws/periphery", self.pool.handle_dial_in)
        app.router.add_get("/api/stacks", self._list_stacks)
        app.router.add_get("/api/stacks/{name}", self._stack_status)
        app.router.add_post("/api/stacks/{name}/deploy", self._deploy_stack)
        app.router.add_get("/api/runs/{id}", self._get_run)
        app.router.add_get("/api/deploys/{id}", self._get_deploy)
        app.router.add_get("/api/deploys/{id}/log", self._get_log)
        app.router.add_get("/api/servers", self._servers)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status/{name}", self._public_status)
        self.listener.setup(app)
        app[AFTER_APPLY] = self.after_apply

    async def _metrics(self, request: web.Request) -> web.Response:
        by_result, seconds = await anyio.to_thread.run_sync(self.deploys.records.finished_stats)
        text = render_metrics(
            deploys_by_result=by_result,
            deploy_seconds=seconds,
            peripheries_connected=len(self.pool.connected()),
            peripheries_known=len(self.pool.known()),
            webhooks_by_verdict=self.listener.verdicts,
            events_dropped={str(s.id): s.dropped for s in self.events.subscribers()},
            events_dropped_gone=self.events.dropped_gone,
            events_published=self.events.published,
        )
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def _start_polling(self, app: web.Application) -> None:
        if self._tg is not None:
            self._tg.start_soon(self.poller.run, app, self.config.poll_interval)

    async def _deploy_stack(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        stored = await anyio.to_thread.run_sync(request.app[STORE].resources)
        resource = stored.get(("stack", name))
        if resource is None:
            return error_response(
                404, "stack_not_found", f"no stack named {name!r} is applied; plan and apply first"
            )
        rs, _ = await anyio.to_thread.run_sync(request.app[SYNCS].load, resource.sync)
        try:
            run_id = await self.deploys.start(rs, [name], f"deploy {name}")
        except DeployRefused as exc:
            return error_response(409, "deploy_refused", str(exc))
        run = await anyio.to_thread.run_sync(self.deploys.records.run, run_id)
        return json_response(run, 202)

    async def _list_stacks(self, request: web.Request) -> web.Response:
        stored = await anyio.to_thread.run_sync(request.app[STORE].resources)
        last = await anyio.to_thread.run_sync(self.deploys.records.last_deploys)
        stacks = [
            {
                "name": name,
                "sync": res.sync,
                "mode": "swarm" if res.config.get("config", {}).get("swarm") else "compose",
                "last_deploy": last.get(name),
            }
            for (kind, name), res in sorted(stored.items())
            if kind == "stack"
        ]
        return json_response({"stacks": stacks})

    async def _stack_status(self, request: web.Request) -> web.Response:
        """The stack as it runs now (200 when every service is healthy, else 503)."""
        status, body = await self.stack_health(request.match_info["name"])
        return json_response(body, status)

    async def _public_status(self, request: web.Request) -> web.Response:
        """``GET /status/NAME``: a short answer for uptime monitors (Uptime Kuma's HTTP
        monitor): 200 healthy, 503 not, 404 unknown. Open only with ``public_status``."""
        if not self.config.public_status and not bearer_ok(request, self.config.api_tokens):
            return error_response(401, "unauthorized", "missing or wrong bearer token")
        status, body = await self.stack_health(request.match_info["name"])
        short: dict[str, Any] = {k: body[k] for k in ("stack", "healthy", "error") if k in body}
        if "services" in body:
            bad = [s["service"] for s in body["services"] if not s["healthy"]]
            short["unhealthy"] = bad
        return json_response(short, status)

    async def stack_health(self, name: str) -> tuple[int, dict[str, Any]]:
        stored = await anyio.to_thread.run_sync(self.store.resources)
        resource = stored.get(("stack", name))
        if resource is None:
            return 404, {
                "stack": name,
                "healthy": False,
                "error": {"code": "stack_not_found", "message": f"no stack named {name!r}"},
            }
        cfg: dict[str, Any] = resource.config.get("config", {})
        last = (await anyio.to_thread.run_sync(self.deploys.records.last_deploys)).get(name)
        body: dict[str, Any] = {"stack": name, "last_deploy": last}
        if cfg.get("swarm"):
            swarm = stored.get(("swarm", str(cfg["swarm"])))
            servers = list(swarm.config.get("config", {}).get("servers", [])) if swarm else []
            mode = DeployMode.SWARM
        else:
            servers, mode = [str(cfg.get("server", ""))], DeployMode.COMPOSE
        connected = self.pool.connected()
        server = next((s for s in servers if s in connected), servers[0] if servers else "")
        try:
            channel = await self.pool.channel(server, 5.0)
            result, _ = await channel.request(
                StackState(
                    mode=mode,
                    name=str(cfg.get("project_name") or name),
                    ignore_services=list(cfg.get("ignore_services", [])),
                )
            )
        except (CoreError, ChannelError) as exc:
            body.update(healthy=False, error=f"server {server!r}: {exc}")
            return 503, body
        if result.error is not None or not isinstance(result.value, HealthGateReport):
            message = result.error.message if result.error else "no state"
            body.update(healthy=False, error=message)
            return 503, body
        report = result.value
        healthy = report.exists and all(v.healthy for v in report.services)
        body.update(
            healthy=healthy,
            running=report.exists,
            services=[msgspec.to_builtins(v) for v in report.services],
        )
        return (200 if healthy else 503), body

    async def _get_run(self, request: web.Request) -> web.Response:
        run = await anyio.to_thread.run_sync(self.deploys.records.run, _int(request, "id"))
        if run is None:
            return error_response(404, "run_not_found", f"no deploy run {request.match_info['id']}")
        return json_response(run)

    async def _get_deploy(self, request: web.Request) -> web.Response:
        deploy = await anyio.to_thread.run_sync(self.deploys.records.deploy, _int(request, "id"))
        if deploy is None:
            return error_response(404, "deploy_not_found", f"no deploy {request.match_info['id']}")
        return json_response(deploy)

    async def _get_log(self, request: web.Request) -> web.Response:
        deploy_id = _int(request, "id")
        try:
            after = int(request.query.get("after", "-1"))
        except ValueError:
            return error_response(400, "bad_request", "after must be an integer (a seq)")
        lines = await anyio.to_thread.run_sync(self.deploys.records.output, deploy_id, after)
        return json_response({"deploy": deploy_id, "lines": lines})

    async def _servers(self, request: web.Request) -> web.Response:
        connected = self.pool.connected()
        problems = await self.refresh_servers()
        names = sorted(self.pool.known())
        return json_response(
            {
                "servers": [
                    {
                        "name": n,
                        "connected": n in connected,
                        "key": connected[n].public_key.fingerprint() if n in connected else None,
                    }
                    for n in names
                ],
                "problems": problems,
            }
        )

    async def after_apply(self, app: web.Application, sync: str, plan: Plan) -> dict[str, Any]:
        """Refresh the servers, take down deleted stacks, start the plan's deploys."""
        out: dict[str, Any] = {"run": None, "removed": []}
        await self.refresh_servers()
        deleted = [c for c in plan.changes if c.kind == "stack" and c.action == "delete"]
        if deleted and self._tg is not None:
            self._tg.start_soon(self._take_down, [c.name for c in deleted], plan)
            out["removed"] = [c.name for c in deleted]
        if plan.deploys:
            syncs = app[SYNCS]
            rs, _ = await anyio.to_thread.run_sync(syncs.load, sync, plan.commit or "")
            heads: dict[tuple[str, str], str] = {}
            if plan.commit:  # stacks from the sync's own repository deploy the planned commit
                try:
                    heads[await anyio.to_thread.run_sync(syncs.repository_of, sync)] = plan.commit
                except CoreError:
                    pass
            try:
                out["run"] = await self.deploys.start(
                    rs, [d.stack for d in plan.deploys], f"apply {plan.id}", heads=heads
                )
            except DeployRefused as exc:
                log.warning("sync %s: plan %s: the deploys did not start: %s", sync, plan.id, exc)
                out["deploy_error"] = str(exc)
        return out

    async def _take_down(self, names: list[str], plan: Plan) -> None:
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
            message = await self.deploys.take_down(name, old, servers)
            log.info("%s", message)


RUNTIME = web.AppKey("runtime", CoreRuntime)


def _int(request: web.Request, key: str) -> int:
    try:
        return int(request.match_info[key])
    except ValueError as exc:
        raise web.HTTPNotFound(text=f"{key} must be a number") from exc


def load_private_key(config: CoreConfig) -> PrivateKey:
    from pathlib import Path

    from core.keyfiles import read_private_key
    from protocol.exceptions import BadKey

    if not config.private_key:
        raise ConfigError(
            f"{config.source or 'core config'}: key 'private_key': required to talk to"
            " peripheries; make one with: stackward keys new /etc/stackward/core.key"
        )
    try:
        return read_private_key(Path(config.private_key))
    except BadKey as exc:
        raise ConfigError(f"{config.source}: key 'private_key': {exc}") from exc
