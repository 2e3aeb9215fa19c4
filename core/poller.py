"""Polling git: what a push would have told us, for forges that send no webhooks.

Every ``poll_interval`` seconds (jittered ±20%) the core looks at the branch head of:

- every git-backed **sync**: a new head runs the sync, as a push to its hook would;
- every **repo** with a ``server`` and a ``path`` (Komodo's Repo): a new head moves its clone
  (``RepoSync``), as a ``pull`` hook would;
- every deployed **stack** whose repository is not its own sync's: a new head is fetched into a
  mirror in ``data_dir/git/stacks``, recorded as the branch's head, and compared with the commit
  last deployed; the stack redeploys (an intent, ``poll``) when the change touches its files (or
  always, with ``webhook_force_deploy``).

Heads are compared with ``git ls-remote`` (no fetch when nothing moved).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread

from core.config import CoreConfig
from core.exceptions import CoreError, StoreError
from core.git import GitError, changed_paths, resolve_branch, update_mirror
from core.plan.models import StoredResource
from core.pool import PeripheryPool
from core.reconcile.desired import stack_mirror
from core.reconcile.reconciler import Intent, Reconciler, Refused
from core.reconcile.spec import touches
from core.repos import pull, repo_url
from core.resources.models import StackConfig
from core.store import Store
from core.store.deploys import DeployRecords
from core.store.intents import Heads
from core.syncing import SyncRunner

log = logging.getLogger(__name__)

Head = Callable[[str, str], Awaitable[str]]


class Poller:
    def __init__(
        self,
        config: CoreConfig,
        store: Store,
        runner: SyncRunner,
        reconciler: Reconciler | None,
        records: DeployRecords,
        heads: Heads,
        pool: PeripheryPool | None,
    ) -> None:
        self.config = config
        self.store = store
        self.runner = runner
        self.reconciler = reconciler
        self.records = records
        self.heads = heads
        self.pool = pool
        self._pulled: dict[str, str] = {}  # repo name -> the commit its clone was moved to

    async def run(self, interval: float) -> None:
        """Until cancelled."""
        rng = random.Random()
        while True:
            await anyio.sleep(interval * rng.uniform(0.8, 1.2))
            try:
                await self.poll_once()
            except CoreError as exc:
                log.warning("poll: %s", exc)

    async def poll_once(self) -> None:
        stored = await anyio.to_thread.run_sync(self.store.resources)
        cache: dict[tuple[str, str], str] = {}

        async def head(url: str, branch: str) -> str:
            key = (url, branch)
            if key not in cache:
                cache[key] = await resolve_branch(url, branch)
            return cache[key]

        sync_urls: dict[str, str] = {}
        for (kind, name), res in sorted(stored.items()):
            cfg: dict[str, Any] = res.config.get("config", {})
            if kind != "resource_sync" or cfg.get("files_on_host"):
                continue
            try:
                url, branch = await anyio.to_thread.run_sync(self.runner.syncs.repository_of, name)
                sync_urls[name] = url
                now = await head(url, branch)
            except (CoreError, GitError) as exc:
                log.info("poll sync %s: %s", name, exc)
                continue
            last = await anyio.to_thread.run_sync(self.store.sync_commit, name)
            if now != last:
                log.info("poll sync %s: %s is at %s (was %s)", name, branch, now[:12], last[:12])
                await self.runner.run(name, True, "poll")
        for (kind, name), res in sorted(stored.items()):
            cfg = res.config.get("config", {})
            if kind == "repo" and cfg.get("server") and cfg.get("path"):
                await self._poll_repo(name, cfg, head)
        records = await anyio.to_thread.run_sync(self.records.records)
        for (kind, name), res in sorted(stored.items()):
            if kind != "stack" or name not in records or not records[name].ok_commit:
                continue
            await self._poll_stack(name, res, stored, sync_urls, records[name].ok_commit, head)

    async def _poll_repo(self, name: str, cfg: dict[str, Any], head: Head) -> None:
        url = repo_url(cfg)
        if not url or self.pool is None:
            return
        try:
            now = await head(url, str(cfg.get("branch") or "main"))
        except GitError as exc:
            log.info("poll repo %s: %s", name, exc)
            return
        if self._pulled.get(name) == now:
            return
        log.info("poll repo %s: moving its clone to %s", name, now[:12])
        if await pull(self.pool, name, cfg, now):
            self._pulled[name] = now

    async def _poll_stack(
        self,
        name: str,
        res: StoredResource,
        stored: dict[tuple[str, str], StoredResource],
        sync_urls: dict[str, str],
        deployed: str,
        head: Head,
    ) -> None:
        cfg: dict[str, Any] = res.config.get("config", {})
        if cfg.get("commit"):
            return  # pinned: a push changes nothing
        linked = str(cfg.get("linked_repo") or "")
        if linked and ("repo", linked) not in stored:
            return
        source = stored[("repo", linked)].config.get("config", {}) if linked else cfg
        url, branch = repo_url(source), str(source.get("branch") or "main")
        if not url or url == sync_urls.get(res.sync):
            return  # no repository, or its sync's: the sync's poll redeploys it
        try:
            now = await head(url, branch)
        except GitError as exc:
            log.info("poll stack %s: %s", name, exc)
            return
        if now == deployed or self.reconciler is None or name in self.reconciler.busy():
            return
        try:
            changed = await anyio.to_thread.run_sync(self._changed, url, deployed, now)
            await anyio.to_thread.run_sync(self.heads.set, url, branch, now, "poll")
        except (GitError, StoreError) as exc:
            log.info("poll stack %s: %s", name, exc)
            changed = []
        import msgspec

        stack = msgspec.convert(cfg, StackConfig)
        if not (cfg.get("webhook_force_deploy") or touches(stack, changed)):
            return
        log.info("poll stack %s: %s moved to %s and touches it", name, branch, now[:12])
        try:
            await self.reconciler.submit(
                Intent([name], "poll", f"poll: {branch} at {now[:12]}", {name: now})
            )
        except (Refused, StoreError) as exc:
            log.warning("poll deploy %s: %s", name, exc)

    def _changed(self, url: str, old: str, new: str) -> list[str]:
        mirror = stack_mirror(self.config.data_dir, url)
        update_mirror(url, mirror)
        return changed_paths(mirror, old, new)
