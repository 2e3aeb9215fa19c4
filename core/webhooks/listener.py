"""The webhook listener: Komodo's ``/listener/...`` paths, answered at once, worked after.

``sync`` hooks run the sync (plan and apply: ``core/syncing.py``); ``stack`` hooks deploy the stack
at the pushed commit when the push touched its files (or always, with ``webhook_force_deploy``);
``repo`` hooks move the repo's clone to the pushed commit. See ``core.webhooks.forges`` for the
checks on what arrives.

**A push cannot roll a stack back.** A signature covers the body only, so an old signed push can
be replayed (and a delivery id is optional and unsigned). Before a stack or repo hook acts, the
repository is fetched into the core's mirror, and the pushed commit is acted on only when it is
the branch head, or descends from the commit deployed (or pulled) now. Otherwise the push is
recorded as ``stale`` (a ``webhook.accepted`` event with that outcome) and nothing deploys;
``webhook_force_deploy`` does not change this. A sync hook always plans the branch head after a
fetch. Delivery ids (GitHub, Gitea, Forgejo, GitLab's ``X-Gitlab-Event-UUID``) are acted on once
a day, across restarts (SQLite).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.to_thread
from aiohttp import web

from core.api.http import error_response, json_response, printable
from core.config import CoreConfig
from core.events.bus import EventBus
from core.events.log import EventLog
from core.events.model import ChangeDetected, Kind, WebhookAccepted
from core.exceptions import CoreError, StoreError
from core.git import GitError, branch_commit, is_ancestor, update_mirror
from core.pool import PeripheryPool
from core.reconcile.desired import stack_mirror
from core.reconcile.reconciler import Intent, Reconciler, Refused
from core.reconcile.spec import touches
from core.repos import pull, repo_url
from core.resources.models import StackConfig
from core.resources.variables import Values
from core.store import Store
from core.store.deploys import DeployRecords
from core.store.intents import Heads
from core.syncing import SyncRunner
from core.tasks import TaskOwner
from core.webhooks.forges import (
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

log = logging.getLogger(__name__)

ANY_BRANCH = "__ANY__"  # Komodo's: a procedure hook that any branch's push runs
PROCEDURE_QUEUE_WAIT = 6 * 3600.0  # a hook waits at most this long for the run before it

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


class Announce(Protocol):
    """Publishes what became of a delivery: its outcome, and the push's branch and commit."""

    def __call__(self, outcome: str, branch: str = "", commit: str = "") -> None: ...


@dataclass(frozen=True, slots=True)
class _Received:
    """A delivery whose signature checked out, and the applied resource it names (if any)."""

    body: bytes
    stored: dict[tuple[str, str], Any]
    resource: Any | None
    cfg: dict[str, Any]
    event: str
    delivery: str


class WebhookListener(TaskOwner):
    def __init__(
        self,
        config: CoreConfig,
        store: Store,
        events: EventBus,
        runner: SyncRunner,
        reconciler: Reconciler | None,
        records: DeployRecords,
        heads: Heads,
        pool: PeripheryPool | None,
    ) -> None:
        self.config = config
        self.store = store
        self.events = events
        self.runner = runner
        self.reconciler = reconciler
        self.records = records
        self.heads = heads
        self.pool = pool
        self.deliveries = Deliveries()
        self.verdicts: Counter[str] = Counter()  # by answer, for /metrics
        self._pulled: dict[str, str] = {}  # repo -> the commit its clone was moved to
        # Komodo's procedure hooks: (name, source, reason) -> the run's id; set by the
        # composition root (core/wiring.py) when procedures run in this core.
        self.run_procedure: Callable[[str, str, str], Awaitable[int]] | None = None
        self._procedure_locks: dict[str, anyio.Lock] = {}

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/listener/{forge}/procedure/{name}/{branch}", self.handle_procedure)
        app.router.add_post("/listener/{forge}/{kind}/{name}/{action}", self.handle)

    def _values(self, stored: dict[tuple[str, str], Any]) -> Values:
        variables = {
            name: str(res.config.get("config", {}).get("value", ""))
            for (kind, name), res in stored.items()
            if kind == "variable" and not res.config.get("config", {}).get("is_secret")
        }
        return Values(variables, self.config.secrets)

    def _secrets(self, cfg: dict[str, Any], values: Values) -> list[str]:
        own = str(cfg.get("webhook_secret") or "")
        if own:
            try:
                return [values.interpolate(own)]
            except CoreError:
                return []
        return [s for s in (self.config.webhook_secret, *self.config.webhook_secrets) if s]

    @staticmethod
    def _repo_of(
        kind: str, cfg: dict[str, Any], stored: dict[tuple[str, str], Any]
    ) -> tuple[str, str]:
        """The URL and branch a stack's or repo's hook is about."""
        linked = str(cfg.get("linked_repo") or "")
        if kind != "repo" and linked and ("repo", linked) in stored:
            repo_cfg = stored[("repo", linked)].config.get("config", {})
            return repo_url(repo_cfg), str(repo_cfg.get("branch") or "main")
        return repo_url(cfg), str(cfg.get("branch") or "main")

    async def _receive(
        self, request: web.Request, forge: str, resource_kind: str, name: str
    ) -> _Received | web.Response:
        """The body (at most ``max_body_bytes``), verified against the resource's secret (else
        the core's); or the answer that refuses it (413, 401)."""
        cap = self.config.max_body_bytes
        too_large = f"webhook bodies are at most {cap} bytes"
        if request.content_length is not None and request.content_length > cap:
            return error_response(413, "body_too_large", too_large)
        parts: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > cap:
                return error_response(413, "body_too_large", too_large)
            parts.append(chunk)
        body = b"".join(parts)
        stored = await anyio.to_thread.run_sync(self.store.resources)
        resource = stored.get((resource_kind, name))
        cfg: dict[str, Any] = resource.config.get("config", {}) if resource is not None else {}
        if not verify(forge, request.headers, body, self._secrets(cfg, self._values(stored))):
            log.warning(
                "webhook %s: bad or missing signature from %s",
                printable(request.rel_url.raw_path),
                printable(request.remote),
            )
            return error_response(401, "unauthorized", "unauthorized")
        return _Received(
            body,
            stored,
            resource,
            cfg,
            event_of(forge, request.headers),
            delivery_of(forge, request.headers),
        )

    def _announcer(
        self, forge: str, target: str, resource_kind: str, name: str, action: str, got: _Received
    ) -> Announce:
        """Publishes what became of one delivery (a ``webhook.accepted`` event)."""

        def accepted(outcome: str, branch: str = "", commit: str = "") -> None:
            self.events.publish(
                Kind.WEBHOOK_ACCEPTED,
                f"{resource_kind}:{name}",
                WebhookAccepted(
                    forge=forge,
                    target=target,
                    name=name,
                    action=action,
                    event=got.event,
                    delivery=got.delivery,
                    branch=branch,
                    commit=commit,
                    outcome=outcome,
                ),
            )

        return accepted

    async def handle(self, request: web.Request) -> web.Response:
        response = await self._handle(request)
        self.verdicts[_VERDICTS.get(response.status, str(response.status))] += 1
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        forge, kind = request.match_info["forge"], request.match_info["kind"]
        name, action = request.match_info["name"], request.match_info["action"]
        if forge not in FORGES or kind not in KINDS or action not in ACTIONS:
            return error_response(404, "not_found", "no such listener path")
        got = await self._receive(request, forge, _RESOURCE_KIND[kind], name)
        if isinstance(got, web.Response):
            return got
        body, stored, resource, cfg = got.body, got.stored, got.resource, got.cfg
        if resource is not None and cfg.get("webhook_enabled") is False:
            return error_response(404, "webhook_off", f"webhook_enabled is false for {name!r}")
        event = got.event
        accepted = self._announcer(forge, kind, _RESOURCE_KIND[kind], name, action, got)

        if event == "ping":
            accepted("ping")
            return json_response({"ok": True, "event": "ping"})
        if event != "push":
            accepted(f"ignored: event {event or '(none)'}")
            return json_response({"ignored": f"event {event or '(none)'}"}, 202)
        if resource is None:
            return error_response(404, f"{kind}_not_found", f"no {kind} named {name!r} is applied")
        if got.delivery and not await self._first_delivery(f"{forge}:{got.delivery}"):
            accepted("duplicate")
            return json_response({"duplicate": True})
        try:
            push = parse_push(body)
        except (ValueError, RecursionError) as exc:
            return error_response(400, "bad_request", f"not a push event: {printable(exc, 200)}")
        url, branch = (
            (await anyio.to_thread.run_sync(self.runner.syncs.repository_of, name))
            if kind == "sync"
            else self._repo_of(kind, cfg, stored)
        )
        if push.branch != branch:
            accepted(f"ignored: push to {push.branch}", push.branch, push.after)
            return json_response({"ignored": f"push to {push.branch!r}, not {branch!r}"}, 202)
        if not self.running:
            return error_response(503, "unavailable", "the core is starting or stopping")
        if kind == "sync":
            accepted("sync" if action != "refresh" else "refresh", push.branch, push.after)
            self.spawn(self.runner.run, name, action != "refresh", "webhook")
        elif kind == "stack":
            stack = _stack_config(cfg)
            touched = stack is not None and bool(touches(stack, push.changed))
            if not (touched or cfg.get("webhook_force_deploy")) or action == "refresh":
                accepted("ignored: the push does not touch this stack", push.branch, push.after)
                return json_response({"ignored": "the push does not touch this stack"}, 202)
            self.spawn(self._deploy, name, resource.sync, url, branch, push.after, accepted)
        else:
            self.spawn(self._pull, name, cfg, url, branch, push.after, accepted)
        return json_response({"accepted": True, "commit": push.after}, 202)

    async def handle_procedure(self, request: web.Request) -> web.Response:
        response = await self._handle_procedure(request)
        self.verdicts[_VERDICTS.get(response.status, str(response.status))] += 1
        return response

    async def _handle_procedure(self, request: web.Request) -> web.Response:
        """Komodo's ``/listener/{github|gitlab}/procedure/{name}/{branch}`` (``router.rs``,
        ``handle_procedure_webhook``): the procedure's ``webhook_secret`` (else the core's)
        verified on the raw body; nothing happens with ``webhook_enabled = false``; a push to
        ``branch`` (any branch with ``__ANY__``) runs the procedure (source ``webhook``). Calls
        that come while it runs are run after it, in turn, as Komodo queues them."""
        forge, name, branch = (request.match_info[k] for k in ("forge", "name", "branch"))
        if forge not in FORGES:
            return error_response(404, "not_found", "no such listener path")
        got = await self._receive(request, forge, "procedure", name)
        if isinstance(got, web.Response):
            return got
        body, resource, cfg, event = got.body, got.resource, got.cfg, got.event
        accepted = self._announcer(forge, "procedure", "procedure", name, "run", got)

        if event == "ping":
            accepted("ping")
            return json_response({"ok": True, "event": "ping"})
        if resource is None:
            return error_response(404, "procedure_not_found", f"no procedure named {name!r}")
        if cfg.get("webhook_enabled") is False:
            accepted("ignored: webhook_enabled is false")
            return json_response({"ignored": "webhook_enabled is false"}, 202)
        if got.delivery and not await self._first_delivery(f"{forge}:{got.delivery}"):
            accepted("duplicate")
            return json_response({"duplicate": True})
        pushed, commit = "", ""
        if branch != ANY_BRANCH:
            if event != "push":
                accepted(f"ignored: event {event or '(none)'}")
                return json_response({"ignored": f"event {event or '(none)'}"}, 202)
            try:
                push = parse_push(body)
            except (ValueError, RecursionError) as exc:
                return error_response(
                    400, "bad_request", f"not a push event: {printable(exc, 200)}"
                )
            pushed, commit = push.branch, push.after
            if push.branch != branch:
                accepted(f"ignored: push to {push.branch}", pushed, commit)
                return json_response({"ignored": f"push to {push.branch!r}, not {branch!r}"}, 202)
        run = self.run_procedure
        if run is None or not self.spawn(self._run_procedure, run, name):
            return error_response(503, "unavailable", "procedures are not running in this core")
        accepted("run", pushed, commit)
        return json_response({"accepted": True, "procedure": name}, 202)

    async def _run_procedure(
        self, run: Callable[[str, str, str], Awaitable[int]], name: str
    ) -> None:
        lock = self._procedure_locks.setdefault(name, anyio.Lock())
        async with lock:  # one webhook call after another, as Komodo's listener lock
            with anyio.move_on_after(PROCEDURE_QUEUE_WAIT):
                while True:
                    try:
                        run_id = await run(name, "webhook", "webhook")
                    except CoreError as exc:
                        if "is running" in str(exc):  # busy: its turn comes after this run
                            await anyio.sleep(1.0)
                            continue
                        log.warning("webhook procedure %s: %s", name, exc)
                        return
                    log.info("webhook procedure %s: run %s", name, run_id)
                    return
            log.warning(
                "webhook procedure %s: still running after %ss; not run", name, PROCEDURE_QUEUE_WAIT
            )

    async def _first_delivery(self, delivery: str) -> bool:
        """De-duplicated for ``DELIVERY_TTL``: in the store (survives restarts) and in memory."""
        now = time.time()
        if not self.deliveries.first_time(delivery, now):
            return False
        log_ = EventLog(self.store)
        try:
            return await anyio.to_thread.run_sync(log_.first_delivery, delivery, now, DELIVERY_TTL)
        except CoreError as exc:  # the store failed: the in-memory check stands
            log.warning("webhook delivery %s: %s", printable(delivery, 80), exc)
            return True

    def _current(self, url: str, branch: str, commit: str, now: str) -> tuple[str, str]:
        """Fetch ``url`` into the core's mirror; ``(verdict, head)``: ``head`` when ``commit``
        is the branch head, ``ahead`` when it descends from ``now``, else ``stale``."""
        mirror = stack_mirror(self.config.data_dir, url)
        update_mirror(url, mirror)
        head = branch_commit(mirror, branch)
        if commit == head:
            return "head", head
        if now and is_ancestor(mirror, now, commit):
            return "ahead", head
        return "stale", head

    async def _check(
        self, what: str, url: str, branch: str, commit: str, now: str
    ) -> tuple[str, str]:
        try:
            verdict, head = await anyio.to_thread.run_sync(self._current, url, branch, commit, now)
        except GitError as exc:
            log.warning("webhook %s: cannot check commit %s: %s", what, commit[:12], exc)
            return "unchecked", ""
        await anyio.to_thread.run_sync(self.heads.set, url, branch, head, "webhook")
        if verdict == "stale":
            log.warning(
                "webhook %s: commit %s is neither the head of %s (%s) nor after the one"
                " deployed now (%s): stale, nothing deploys",
                what,
                commit[:12],
                branch,
                head[:12],
                now[:12] or "none",
            )
        return verdict, head

    async def _deploy(
        self, name: str, sync: str, url: str, branch: str, commit: str, accepted: Announce
    ) -> None:
        """Deploy one stack at the pushed ``commit``, unless that would roll it back."""
        records = await anyio.to_thread.run_sync(self.records.records)
        now = records[name].ok_commit if name in records else ""
        verdict, _ = await self._check(f"stack {name}", url, branch, commit, now)
        if verdict in ("stale", "unchecked"):
            accepted(verdict, branch, commit)
            return
        accepted("deploy", branch, commit)
        self.events.publish(
            Kind.CHANGE_DETECTED,
            f"stack:{name}",
            ChangeDetected(source="webhook", sync=sync, commit=commit),
        )
        if self.reconciler is None:
            log.warning("webhook deploy %s: deploys are off (no private_key)", name)
            return
        try:
            await self.reconciler.submit(
                Intent([name], "webhook", f"webhook: push {commit[:12]}", {name: commit})
            )
        except (Refused, StoreError) as exc:
            log.warning("webhook deploy %s: %s", name, exc)

    async def _pull(
        self, name: str, cfg: dict[str, Any], url: str, branch: str, commit: str, accepted: Announce
    ) -> None:
        verdict, _ = await self._check(
            f"repo {name}", url, branch, commit, self._pulled.get(name, "")
        )
        if verdict in ("stale", "unchecked"):
            accepted(verdict, branch, commit)
            return
        accepted("pull", branch, commit)
        if self.pool is not None and await pull(self.pool, name, cfg, commit):
            self._pulled[name] = commit


def _stack_config(cfg: dict[str, Any]) -> StackConfig | None:
    import msgspec

    try:
        return msgspec.convert(cfg, StackConfig)
    except msgspec.ValidationError:
        return None
