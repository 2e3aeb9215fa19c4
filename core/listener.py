"""The webhook listener: Komodo's ``/listener/...`` paths, answered at once, worked after.

``sync`` hooks plan and apply the sync (then its deploys run); ``stack`` hooks deploy the stack
when the push touched its files (or always, with ``webhook_force_deploy``); ``repo`` hooks move
the repo's clone to the pushed commit. Pushes that land while a sync runs queue exactly one
follow-up run, which reads the newest commit. See ``core.webhooks`` for the checks.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from aiohttp import web

from core.app import (
    STORE,
    SYNCS,
    error_response,
    json_response,
    publish_applied,
    publish_plan,
)
from core.events.log import EventLog
from core.events.model import ChangeDetected, Kind, WebhookAccepted
from core.exceptions import CoreError
from core.plan.planner import tracked_files
from core.resources.models import StackConfig
from core.resources.variables import Values
from core.webhooks import (
    ACTIONS,
    DELIVERY_TTL,
    FORGES,
    KINDS,
    Deliveries,
    delivery_of,
    event_of,
    parse_push,
    verify,
)

if TYPE_CHECKING:
    from core.runtime import CoreRuntime

log = logging.getLogger(__name__)

_RESOURCE_KIND = {"stack": "stack", "sync": "resource_sync", "repo": "repo"}
_VERDICTS = {
    200: "answered",  # a ping, or a delivery seen before
    202: "accepted",  # work started, or a push that does not concern the resource
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    413: "too_large",
    503: "unavailable",
}


class Listener:
    def __init__(self, runtime: CoreRuntime) -> None:
        self.runtime = runtime
        self.deliveries = Deliveries()
        self.verdicts: Counter[str] = Counter()  # by answer, for /metrics
        self._sync_running: set[str] = set()
        self._sync_again: set[str] = set()

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/listener/{forge}/{kind}/{name}/{action}", self.handle)

    def _values(self, stored: dict[tuple[str, str], Any]) -> Values:
        variables = {
            name: str(res.config.get("config", {}).get("value", ""))
            for (kind, name), res in stored.items()
            if kind == "variable" and not res.config.get("config", {}).get("is_secret")
        }
        return Values(variables, self.runtime.config.secrets)

    def _secrets(self, cfg: dict[str, Any], values: Values) -> list[str]:
        own = str(cfg.get("webhook_secret") or "")
        if own:
            try:
                return [values.interpolate(own)]
            except CoreError:
                return []
        config = self.runtime.config
        return [s for s in (config.webhook_secret, *config.webhook_secrets) if s]

    def _branch(self, kind: str, cfg: dict[str, Any], stored: dict[tuple[str, str], Any]) -> str:
        linked = str(cfg.get("linked_repo") or "")
        if kind != "repo" and linked and ("repo", linked) in stored:
            repo_cfg = stored[("repo", linked)].config.get("config", {})
            return str(repo_cfg.get("branch") or "main")
        return str(cfg.get("branch") or "main")

    async def handle(self, request: web.Request) -> web.Response:
        response = await self._handle(request)
        self.verdicts[_VERDICTS.get(response.status, str(response.status))] += 1
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        forge, kind = request.match_info["forge"], request.match_info["kind"]
        name, action = request.match_info["name"], request.match_info["action"]
        if forge not in FORGES or kind not in KINDS or action not in ACTIONS:
            return error_response(404, "not_found", "no such listener path")
        cap = self.runtime.config.max_body_bytes
        if request.content_length is not None and request.content_length > cap:
            return error_response(413, "body_too_large", f"webhook bodies are at most {cap} bytes")
        parts: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > cap:
                return error_response(
                    413, "body_too_large", f"webhook bodies are at most {cap} bytes"
                )
            parts.append(chunk)
        body = b"".join(parts)
        stored = await anyio.to_thread.run_sync(request.app[STORE].resources)
        resource = stored.get((_RESOURCE_KIND[kind], name))
        cfg: dict[str, Any] = resource.config.get("config", {}) if resource is not None else {}
        if not verify(forge, request.headers, body, self._secrets(cfg, self._values(stored))):
            log.warning(
                "webhook %s: bad or missing signature from %s", request.path, request.remote
            )
            return error_response(401, "unauthorized", "unauthorized")
        if resource is not None and cfg.get("webhook_enabled") is False:
            return error_response(404, "webhook_off", f"webhook_enabled is false for {name!r}")
        event = event_of(forge, request.headers)
        delivery = delivery_of(forge, request.headers)

        def accepted(outcome: str, branch: str = "", commit: str = "") -> None:
            self.runtime.events.publish(
                Kind.WEBHOOK_ACCEPTED,
                f"{_RESOURCE_KIND[kind]}:{name}",
                WebhookAccepted(
                    forge=forge,
                    target=kind,
                    name=name,
                    action=action,
                    event=event,
                    delivery=delivery,
                    branch=branch,
                    commit=commit,
                    outcome=outcome,
                ),
            )

        if event == "ping":
            accepted("ping")
            return json_response({"ok": True, "event": "ping"})
        if event != "push":
            accepted(f"ignored: event {event or '(none)'}")
            return json_response({"ignored": f"event {event or '(none)'}"}, 202)
        if resource is None:
            return error_response(404, f"{kind}_not_found", f"no {kind} named {name!r} is applied")
        if delivery and not await self._first_delivery(delivery):
            accepted("duplicate")
            return json_response({"duplicate": True})
        try:
            push = parse_push(body)
        except ValueError as exc:
            return error_response(400, "bad_request", f"not a push event: {exc}")
        branch = self._branch(kind, cfg, stored)
        if push.branch != branch:
            accepted(f"ignored: push to {push.branch}", push.branch, push.after)
            return json_response({"ignored": f"push to {push.branch!r}, not {branch!r}"}, 202)
        tg = self.runtime.task_group
        if tg is None:
            return error_response(503, "unavailable", "the core is starting or stopping")
        if kind == "sync":
            accepted("sync" if action != "refresh" else "refresh", push.branch, push.after)
            tg.start_soon(self.run_sync, request.app, name, action != "refresh", "webhook")
        elif kind == "stack":
            touched = touches(cfg, push.changed)
            if not (touched or cfg.get("webhook_force_deploy")) or action == "refresh":
                accepted("ignored: the push does not touch this stack", push.branch, push.after)
                return json_response({"ignored": "the push does not touch this stack"}, 202)
            accepted("deploy", push.branch, push.after)
            tg.start_soon(self.deploy, request.app, name, resource.sync, push.after)
        else:
            accepted("pull", push.branch, push.after)
            tg.start_soon(self.pull, name, cfg, push.after)
        return json_response({"accepted": True, "commit": push.after}, 202)

    async def _first_delivery(self, delivery: str) -> bool:
        """De-duplicated for ``DELIVERY_TTL``: in the store (survives restarts) and in memory."""
        now = time.time()
        if not self.deliveries.first_time(delivery, now):
            return False
        log_ = EventLog(self.runtime.store)
        try:
            return await anyio.to_thread.run_sync(log_.first_delivery, delivery, now, DELIVERY_TTL)
        except CoreError as exc:  # the store failed: the in-memory check stands
            log.warning("webhook delivery %s: %s", delivery, exc)
            return True

    async def run_sync(self, app: web.Application, name: str, apply: bool, source: str) -> None:
        """Plan (and apply) a sync; a run asked for while one goes queues one follow-up run."""
        if name in self._sync_running:
            self._sync_again.add(name)  # one follow-up run, at whatever is newest then
            return
        self._sync_running.add(name)
        try:
            while True:
                self._sync_again.discard(name)
                try:
                    previous = await anyio.to_thread.run_sync(app[STORE].sync_commit, name)
                    plan = await anyio.to_thread.run_sync(app[SYNCS].plan, name)
                    fetch = app[SYNCS].fetch_seconds.get(name, 0.0)
                    self.runtime.events.publish(
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
                    publish_plan(app, plan)
                    if apply and (plan.changes or plan.deploys):
                        applied, _ = await anyio.to_thread.run_sync(app[SYNCS].apply, name, plan.id)
                        publish_applied(app, applied)
                        await self.runtime.after_apply(app, name, plan)
                except CoreError as exc:
                    log.warning("webhook sync %s: %s", name, exc)
                if name not in self._sync_again:
                    break
        finally:
            self._sync_running.discard(name)

    async def deploy(
        self, app: web.Application, name: str, sync: str, commit: str, source: str = "webhook"
    ) -> None:
        """Deploy one stack at ``commit`` (a push named it, or polling found it)."""
        self.runtime.events.publish(
            Kind.CHANGE_DETECTED,
            f"stack:{name}",
            ChangeDetected(source=source, sync=sync, commit=commit),
        )
        try:
            rs, _ = await anyio.to_thread.run_sync(app[SYNCS].load, sync)
            await self.runtime.deploys.start(
                rs, [name], f"{source}: deploy {name}", commits={name: commit}
            )
        except CoreError as exc:
            log.warning("%s deploy %s: %s", source, name, exc)

    async def pull(self, name: str, cfg: dict[str, Any], commit: str) -> bool:
        """Move a ``[[repo]]``'s clone on its server to ``commit``; True when it moved."""
        from core.poller import repo_url
        from protocol.messages import RepoSync

        server, path, url = str(cfg.get("server", "")), str(cfg.get("path", "")), repo_url(cfg)
        if not (server and path and url and commit):
            log.warning("pull %s: the repo needs server, path and url", name)
            return False
        try:
            channel = await self.runtime.pool.channel(server, 15.0)
            result, _ = await channel.request(RepoSync(url=url, commit=commit, path=path))
        except Exception as exc:  # the channel's and the pool's errors alike
            log.warning("pull %s: %s", name, exc)
            return False
        if result.error is not None:
            log.warning("pull %s: %s", name, result.error.message)
            return False
        return True


def touches(cfg: dict[str, Any], changed: tuple[str, ...]) -> bool:
    """Whether a push changing ``changed`` touches the stack configured by ``cfg``."""
    import msgspec

    stack = msgspec.convert(cfg, StackConfig)
    files = set(tracked_files(stack))
    run = posixpath.normpath(stack.run_directory or ".")
    for path in (posixpath.normpath(p) for p in changed):
        if path in files or (run != "." and path.startswith(run + "/")):
            return True
    return False
