"""Polling git: what a push would have told us, for forges that send no webhooks.

Every ``poll_interval`` seconds (jittered ±20%) the core looks at the branch head of:

- every git-backed **sync**: a new head runs the sync, as a push to its hook would;
- every **repo** with a ``server`` and a ``path`` (Komodo's Repo): a new head moves its clone
  (``RepoSync``), as a ``pull`` hook would;
- every deployed **stack** whose repository is not its own sync's: a new head is fetched into a
  mirror in ``data_dir/git/stacks`` and compared with the commit last deployed; the stack
  redeploys when the change touches its files (or always, with ``webhook_force_deploy``).

Heads are compared with ``git ls-remote`` (no fetch when nothing moved).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from aiohttp import web

from core.app import STORE, SYNCS
from core.exceptions import CoreError
from core.git import GitError, changed_paths, provider_url, resolve_branch, update_mirror

if TYPE_CHECKING:
    from core.runtime import CoreRuntime

log = logging.getLogger(__name__)


def repo_url(cfg: dict[str, Any]) -> str:
    """A ``[[repo]]``'s (or a stack's own) clone URL, "" when it names none."""
    if cfg.get("url"):
        return str(cfg["url"])
    if cfg.get("repo"):
        return provider_url(
            str(cfg.get("git_provider") or "github.com"),
            bool(cfg.get("git_https", True)),
            str(cfg["repo"]),
        )
    return ""


class Poller:
    def __init__(self, runtime: CoreRuntime) -> None:
        self.runtime = runtime
        self._pulled: dict[str, str] = {}  # repo name -> the commit its clone was moved to

    async def run(self, app: web.Application, interval: float) -> None:
        """Until cancelled."""
        rng = random.Random()
        while True:
            await anyio.sleep(interval * rng.uniform(0.8, 1.2))
            try:
                await self.poll_once(app)
            except CoreError as exc:
                log.warning("poll: %s", exc)

    async def poll_once(self, app: web.Application) -> None:
        stored = await anyio.to_thread.run_sync(app[STORE].resources)
        heads: dict[tuple[str, str], str] = {}

        async def head(url: str, branch: str) -> str:
            key = (url, branch)
            if key not in heads:
                heads[key] = await resolve_branch(url, branch)
            return heads[key]

        sync_urls: dict[str, str] = {}
        for (kind, name), res in sorted(stored.items()):
            cfg: dict[str, Any] = res.config.get("config", {})
            if kind != "resource_sync" or cfg.get("files_on_host"):
                continue
            try:
                url, branch = await anyio.to_thread.run_sync(app[SYNCS].repository_of, name)
                sync_urls[name] = url
                now = await head(url, branch)
            except (CoreError, GitError) as exc:
                log.info("poll sync %s: %s", name, exc)
                continue
            last = await anyio.to_thread.run_sync(app[STORE].sync_commit, name)
            if now != last:
                log.info("poll sync %s: %s is at %s (was %s)", name, branch, now[:12], last[:12])
                await self.runtime.listener.run_sync(app, name, True, "poll")
        for (kind, name), res in sorted(stored.items()):
            cfg = res.config.get("config", {})
            if kind == "repo" and cfg.get("server") and cfg.get("path"):
                await self._poll_repo(name, cfg, head)
        last_deploys = await anyio.to_thread.run_sync(self.runtime.deploys.records.last_deploys)
        for (kind, name), res in sorted(stored.items()):
            if kind != "stack" or name not in last_deploys:
                continue
            await self._poll_stack(app, name, res, stored, sync_urls, last_deploys[name], head)

    async def _poll_repo(self, name: str, cfg: dict[str, Any], head: Any) -> None:
        url = repo_url(cfg)
        if not url:
            return
        try:
            now = await head(url, str(cfg.get("branch") or "main"))
        except GitError as exc:
            log.info("poll repo %s: %s", name, exc)
            return
        if self._pulled.get(name) == now:
            return
        log.info("poll repo %s: moving its clone to %s", name, now[:12])
        if await self.runtime.listener.pull(name, cfg, now):
            self._pulled[name] = now

    async def _poll_stack(
        self,
        app: web.Application,
        name: str,
        res: Any,
        stored: dict[tuple[str, str], Any],
        sync_urls: dict[str, str],
        last: dict[str, Any],
        head: Any,
    ) -> None:
        cfg: dict[str, Any] = res.config.get("config", {})
        if cfg.get("commit"):
            return  # pinned: a push changes nothing
        linked = str(cfg.get("linked_repo") or "")
        source = stored[("repo", linked)].config.get("config", {}) if linked else cfg
        if linked and ("repo", linked) not in stored:
            return
        url, branch = repo_url(source), str(source.get("branch") or "main")
        if not url or url == sync_urls.get(res.sync):
            return  # no repository, or its sync's: the sync's poll redeploys it
        deployed = str(last.get("commit") or "")
        try:
            now = await head(url, branch)
        except GitError as exc:
            log.info("poll stack %s: %s", name, exc)
            return
        if not deployed or now == deployed or name in self.runtime.deploys.running():
            return
        try:
            changed = await anyio.to_thread.run_sync(self._changed, url, deployed, now)
        except GitError as exc:
            log.info("poll stack %s: %s", name, exc)
            changed = []
        from core.listener import touches

        if not (cfg.get("webhook_force_deploy") or touches(cfg, tuple(changed))):
            return
        log.info("poll stack %s: %s moved to %s and touches it", name, branch, now[:12])
        await self.runtime.listener.deploy(app, name, res.sync, now, "poll")

    def _changed(self, url: str, old: str, new: str) -> list[str]:
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", url)[-40:]
        digest = hashlib.sha1(url.encode()).hexdigest()[:10]
        mirror = Path(self.runtime.config.data_dir) / "git" / "stacks" / f"{slug}-{digest}.git"
        update_mirror(url, mirror)
        return changed_paths(mirror, old, new)
