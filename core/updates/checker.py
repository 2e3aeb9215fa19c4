"""The image update check: Komodo's ``poll_for_updates`` / ``auto_update`` on stacks.

For each stack with ``poll_for_updates`` or ``auto_update`` (Komodo's ``GlobalAutoUpdate``
query, ``api/execute/maintenance.rs``) that has been deployed, on an interval
(``image_poll_interval``) and when asked (:func:`check_updates`, the API):

1. the stack's agent says which image each service runs and its digests (``ImageDigests``);
2. the image's registry says the current digest of its tag (:mod:`core.updates.registry`), with
   the stack's ``registry_provider``/``registry_account`` token when it is that registry's, else
   the first account of an ``[[image_registry]]`` of that domain, else anonymously;
3. a service has an update when that digest is not among the ones it runs, and it runs at least
   one known digest (Komodo's ``ImageDigest::update_available``: no digest to compare, no update,
   so a local build is never flagged). A reference pinned to a digest is never looked up, and
   ``auto_update_skip_services`` are skipped by the automatic checks (interval and
   GlobalAutoUpdate), not by a check of named stacks (Komodo: "Manual checks still include all
   services");
4. ``update.checked`` for the stack, ``update.available`` once per service and newer digest (with
   ``redeploy`` true when auto_update follows: Komodo alerts "update available" only when it does
   not redeploy);
5. ``auto_update`` (unless ``skip_auto_update``): an intent ``update`` that pulls and deploys the
   services with newer images, or the whole stack with ``auto_update_all_services``
   (:mod:`core.updates.redeploy` says when some services are safe), and ``update.redeploy``;
   not while the stack is being deployed (the next check tells whether it is still due).

Each stack's outcome is kept for ``GET /api/stacks`` (:meth:`UpdateChecker.view`); a stack that
cannot be checked (agent gone, registry down) says why, and the next check tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import msgspec

from core.config import CoreConfig
from core.events.bus import EventBus
from core.events.model import (
    Kind,
    ServiceImageState,
    UpdateAvailable,
    UpdateChecked,
    UpdateRedeploy,
)
from core.exceptions import CoreError, RegistryError
from core.pool import PeripheryPool
from core.reconcile.reconciler import Intent, Reconciler
from core.resources.models import StackConfig, config_from_canonical
from core.store import Store
from core.store.deploys import DeployRecords
from core.updates.lookup import Credentials, Token, TokenKey
from core.updates.reference import ImageRef, parse_reference, same_registry
from core.updates.registry import Registries
from protocol.exceptions import ChannelError
from protocol.messages import DeployMode, ImageDigests, ImageDigestsReport

log = logging.getLogger(__name__)

FIRST_CHECK = 15.0  # seconds after the start before the first interval check (agents connect)
AGENT_TIMEOUT = 30.0  # seconds for an agent to say what its stack runs
PARALLEL = 4  # stacks checked at once

ServiceUpdate = ServiceImageState  # one service's outcome (the event's shape)


class StackCheck(msgspec.Struct, frozen=True):
    stack: str
    services: list[ServiceUpdate] = []
    error: str = ""  # the stack could not be checked at all
    run: int | None = None  # auto_update: the run that redeploys it
    checked_at: float = 0.0

    @property
    def updates(self) -> list[ServiceUpdate]:
        return [s for s in self.services if s.update_available]


@dataclass(frozen=True)
class Target:
    """A stack to check, from the applied resources."""

    name: str
    docker_name: str
    mode: DeployMode
    servers: tuple[str, ...]
    watched: bool  # poll_for_updates or auto_update
    auto_update: bool
    all_services: bool
    skip_services: tuple[str, ...]
    registry_provider: str = ""
    registry_account: str = ""


def targets_from(stored: dict[tuple[str, str], Any]) -> dict[str, Target]:
    """Every applied stack as a :class:`Target` (``watched`` says which the interval checks)."""
    out: dict[str, Target] = {}
    for (kind, name), res in stored.items():
        if kind != "stack":
            continue
        try:
            cfg: StackConfig = config_from_canonical("stack", res.config.get("config", {}))
        except CoreError:
            continue
        if cfg.swarm:
            swarm = stored.get(("swarm", cfg.swarm))
            servers = tuple(swarm.config.get("config", {}).get("servers", [])) if swarm else ()
            mode = DeployMode.SWARM
        else:
            servers, mode = ((cfg.server,) if cfg.server else ()), DeployMode.COMPOSE
        out[name] = Target(
            name=name,
            docker_name=cfg.project_name or name,
            mode=mode,
            servers=servers,
            watched=cfg.poll_for_updates or cfg.auto_update,  # auto_update implies the poll
            auto_update=cfg.auto_update,
            all_services=cfg.auto_update_all_services,
            skip_services=tuple(cfg.auto_update_skip_services),
            registry_provider=cfg.registry_provider,
            registry_account=cfg.registry_account,
        )
    return out


def credentials_for(config: CoreConfig, ref: ImageRef, target: Target) -> Credentials | None:
    """The stack's own registry account when it is this image's registry, else the first
    account the core has for the registry, else None (anonymous)."""
    if target.registry_provider and target.registry_account:
        if same_registry(target.registry_provider, ref.domain):
            token = config.registry_token(target.registry_provider, target.registry_account)
            if token is not None:
                return Credentials(target.registry_account, token)
    for registry in config.image_registry:
        if same_registry(registry.domain, ref.domain) and registry.accounts:
            account = registry.accounts[0]
            return Credentials(account.username, account.token)
    return None


def digests_of(repo_digests: Collection[str]) -> list[str]:
    """``repo@sha256:…`` (or a bare ``sha256:…``) → ``sha256:…``, in order, once each."""
    out: list[str] = []
    for d in repo_digests:
        digest = d.split("@", 1)[1] if "@" in d else d
        if digest.startswith("sha256:") and digest not in out:
            out.append(digest)
    return out


def update_available(latest: str, current: Collection[str]) -> bool:
    """Komodo's ``ImageDigest::update_available``: nothing to compare with is no update."""
    return bool(latest) and bool(current) and latest not in current


class UpdateChecker:
    def __init__(
        self,
        config: CoreConfig,
        store: Store,
        records: DeployRecords,
        pool: PeripheryPool,
        reconciler: Reconciler | None,
        events: EventBus,
    ) -> None:
        self.config = config
        self.store = store
        self.records = records
        self.pool = pool
        self.reconciler = reconciler
        self.events = events
        self.results: dict[str, StackCheck] = {}
        self._tokens: dict[TokenKey, Token] = {}
        self._announced: set[tuple[str, str, str]] = set()  # (stack, service, latest digest)
        self._lock = anyio.Lock()  # one check at a time (Komodo's global_update_lock)

    # ------------------------------------------------------------------------------ running

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Check every ``image_poll_interval`` seconds (never when it is 0) until cancelled."""
        interval = self.config.image_poll_interval
        task_status.started()
        if interval <= 0:
            await anyio.sleep_forever()
        await anyio.sleep(min(FIRST_CHECK, interval))
        while True:
            try:
                await self.check()
            except Exception:  # a check that breaks is logged; the next one tries again
                log.exception("image update check")
            await anyio.sleep(interval)

    def view(self, stack: str) -> dict[str, Any] | None:
        """The stack's last check, for the API (None: never checked)."""
        found = self.results.get(stack)
        if found is None:
            return None
        return {
            "checked_at": found.checked_at,
            "error": found.error,
            "update_available": bool(found.updates),
            "services": [msgspec.to_builtins(s) for s in found.services],
        }

    # ------------------------------------------------------------------------------ checking

    async def check(
        self,
        stacks: Collection[str] | None = None,
        *,
        skip_auto_update: bool = False,
        automatic: bool = True,
    ) -> list[StackCheck]:
        """Check ``stacks`` (default: every applied stack with ``poll_for_updates`` or
        ``auto_update``); redeploy those with ``auto_update`` unless ``skip_auto_update``.
        ``automatic``: the interval or GlobalAutoUpdate (``auto_update_skip_services`` apply).
        Raises ``CoreError`` for a named stack that is not applied."""
        async with self._lock:
            stored = await anyio.to_thread.run_sync(self.store.resources)
            found = targets_from(stored)
            for gone in set(self.results) - set(found):  # no longer applied
                del self.results[gone]
            self._announced = {a for a in self._announced if a[0] in found}
            if stacks is None:
                targets = [t for t in found.values() if t.watched]
            else:
                unknown = sorted(set(stacks) - set(found))
                if unknown:
                    raise CoreError(f"no stack named {', '.join(map(repr, unknown))} is applied")
                targets = [found[s] for s in sorted(set(stacks))]
            deployed = await anyio.to_thread.run_sync(self.records.ever_healthy)
            results: dict[str, StackCheck] = {}
            limiter = anyio.CapacityLimiter(PARALLEL)
            async with Registries(self._tokens, self.config.registry_timeout) as registries:
                cache: dict[tuple[str, str], str | RegistryError] = {}

                async def one(target: Target) -> None:
                    async with limiter:
                        results[target.name] = await self._check_stack(
                            target,
                            target.name in deployed,
                            registries,
                            cache,
                            skip_auto_update=skip_auto_update,
                            automatic=automatic,
                        )

                async with anyio.create_task_group() as tg:
                    for target in targets:
                        tg.start_soon(one, target)
            return [results[t.name] for t in targets]

    async def _check_stack(
        self,
        target: Target,
        deployed: bool,
        registries: Registries,
        cache: dict[tuple[str, str], str | RegistryError],
        *,
        skip_auto_update: bool,
        automatic: bool,
    ) -> StackCheck:
        now = time.time()
        if not deployed:
            return self._keep(StackCheck(target.name, error="never deployed", checked_at=now))
        try:
            report = await self._running(target)
        except CoreError as exc:
            return self._keep(StackCheck(target.name, error=str(exc), checked_at=now))
        if not report.exists:
            return self._keep(StackCheck(target.name, error="nothing of it runs", checked_at=now))
        services = []
        for running in report.services:
            services.append(
                await self._check_service(
                    target,
                    running.service,
                    running.image,
                    running.digests,
                    registries,
                    cache,
                    automatic,
                )
            )
        check = StackCheck(target.name, services, checked_at=now)
        self.events.publish(
            Kind.UPDATE_CHECKED,
            f"stack:{target.name}",
            UpdateChecked(stack=target.name, services=services),
        )
        redeploy = target.auto_update and not skip_auto_update and bool(check.updates)
        self._announce(target, check, redeploy)
        if redeploy:
            check = msgspec.structs.replace(check, run=await self._redeploy(target, check))
        return self._keep(check)

    async def _check_service(
        self,
        target: Target,
        service: str,
        image: str,
        repo_digests: list[str],
        registries: Registries,
        cache: dict[tuple[str, str], str | RegistryError],
        automatic: bool,
    ) -> ServiceUpdate:
        current = digests_of(repo_digests)
        base = ServiceUpdate(service=service, image=image, current=current)
        if automatic and service in target.skip_services:
            return msgspec.structs.replace(base, skipped="auto_update_skip_services")
        if not image:
            return msgspec.structs.replace(base, error="the agent knows no image reference")
        if "@" in image:  # Komodo: "Images with a hardcoded digest can't have update"
            return msgspec.structs.replace(base, skipped="pinned to a digest")
        try:
            ref = parse_reference(image)
        except CoreError as exc:
            return msgspec.structs.replace(base, error=str(exc))
        credentials = credentials_for(self.config, ref, target)
        key = (str(ref), credentials.username if credentials else "")
        latest = cache.get(key)
        if latest is None:
            try:
                latest = await registries.digest(ref, credentials)
            except RegistryError as exc:
                latest = exc
            cache[key] = latest
        if isinstance(latest, RegistryError):
            return msgspec.structs.replace(base, error=str(latest))
        return msgspec.structs.replace(
            base, latest=latest, update_available=update_available(latest, current)
        )

    async def _running(self, target: Target) -> ImageDigestsReport:
        """What the stack's agent says it runs. Raises ``CoreError`` (named server)."""
        connected = self.pool.connected()
        server = next(
            (s for s in target.servers if s in connected),
            target.servers[0] if target.servers else "",
        )
        if not server:
            raise CoreError("no server to ask: set server (Compose) or the swarm's servers")
        try:
            with anyio.fail_after(AGENT_TIMEOUT):
                channel = await self.pool.channel(server, AGENT_TIMEOUT)
                result, _ = await channel.request(
                    ImageDigests(mode=target.mode, name=target.docker_name)
                )
        except TimeoutError as exc:
            raise CoreError(f"server {server!r}: no answer in {AGENT_TIMEOUT:g}s") from exc
        except ChannelError as exc:
            raise CoreError(f"server {server!r}: {exc}") from exc
        if result.error is not None:
            raise CoreError(f"server {server!r}: {result.error.message}")
        if not isinstance(result.value, ImageDigestsReport):
            raise CoreError(f"server {server!r}: no image report (an older agent?)")
        return result.value

    # ------------------------------------------------------------------------------ outcomes

    def _keep(self, check: StackCheck) -> StackCheck:
        self.results[check.stack] = check
        if check.error:
            log.info("image update check of %s: %s", check.stack, check.error)
            self.events.publish(
                Kind.UPDATE_CHECKED,
                f"stack:{check.stack}",
                UpdateChecked(stack=check.stack, services=[], error=check.error),
            )
        return check

    def _announce(self, target: Target, check: StackCheck, redeploy: bool) -> None:
        """``update.available`` once per service and newer digest; a service that runs its
        tag's digest again is announced again when a newer one comes (Komodo's alert cache)."""
        for s in check.services:
            if s.error or s.skipped:
                continue
            if not s.update_available:
                self._announced = {a for a in self._announced if a[:2] != (target.name, s.service)}
                continue
            key = (target.name, s.service, s.latest)
            if key in self._announced:
                continue
            self._announced.add(key)
            log.info(
                "stack %s: service %s (%s) has a newer image %s%s",
                target.name,
                s.service,
                s.image,
                s.latest,
                "; redeploying" if redeploy else "",
            )
            self.events.publish(
                Kind.UPDATE_AVAILABLE,
                f"stack:{target.name}",
                UpdateAvailable(
                    stack=target.name,
                    service=s.service,
                    image=s.image,
                    latest=s.latest,
                    current=s.current,
                    redeploy=redeploy,
                ),
            )

    async def _redeploy(self, target: Target, check: StackCheck) -> int | None:
        if self.reconciler is None:
            return None
        if target.name in self.reconciler.busy():
            # a deploy runs or waits: a check after it tells whether an update is still due
            # (asking now would add a follow-up deploy for each check while it runs)
            log.info("auto_update of %s waits: the stack is being deployed", target.name)
            return None
        updates = check.updates
        services = [] if target.all_services else sorted(s.service for s in updates)
        images = sorted({s.image for s in updates})
        what = "all services" if not services else ", ".join(services)
        try:
            admission = await self.reconciler.submit(
                Intent(
                    [target.name],
                    "update",
                    f"update: newer images for {target.name} ({what})",
                    pull={target.name: services},
                )
            )
        except CoreError as exc:
            log.warning("auto_update of %s not started: %s", target.name, exc)
            return None
        run = admission.runs[target.name]
        self.events.publish(
            Kind.UPDATE_REDEPLOY,
            f"stack:{target.name}",
            UpdateRedeploy(stack=target.name, services=services, images=images, run=run),
        )
        return run


async def check_updates(
    checker: UpdateChecker, *, skip_auto_update: bool = False
) -> list[StackCheck]:
    """Komodo's ``GlobalAutoUpdate`` execution: check every stack with ``poll_for_updates`` or
    ``auto_update``, and redeploy the ``auto_update`` ones that have newer images (unless
    ``skip_auto_update``). Returns each stack's check; never raises for one stack's failure
    (it is in that stack's ``error``)."""
    return await checker.check(skip_auto_update=skip_auto_update, automatic=True)


def summary_lines(results: list[StackCheck]) -> list[str]:
    """A line per stack checked, as Komodo's GlobalAutoUpdate logs them ("Checked Stack NAME"),
    with what was found: the services with newer images, the run that redeploys them, why a
    stack could not be checked."""
    if not results:
        return ["no stack has poll_for_updates or auto_update"]
    lines = []
    for r in results:
        if r.error:
            lines.append(f"Check Stack {r.stack}: {r.error}")
            continue
        newer = [f"{s.service} ({s.image})" for s in r.updates]
        failed = [f"{s.service}: {s.error}" for s in r.services if s.error]
        text = f"Checked Stack {r.stack} ✅"
        if newer:
            text += "; newer images: " + ", ".join(newer)
        if r.run is not None:
            text += f"; redeploying in run {r.run}"
        if failed:
            text += "; not looked up: " + "; ".join(failed)
        lines.append(text)
    return lines


async def global_auto_update(checker: UpdateChecker, skip_auto_update: bool) -> list[str]:
    """``GlobalAutoUpdate`` as a procedure's step runs it (core/automation takes a
    ``Callable[[bool], Awaitable[list[str]]]``): :func:`check_updates`, then its lines."""
    return summary_lines(await check_updates(checker, skip_auto_update=skip_auto_update))
