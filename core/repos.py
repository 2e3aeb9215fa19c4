"""Komodo's Repo: a ``[[repo]]`` with a ``server`` and a ``path`` is a working clone on that
server, which the webhooks (``pull``) and polling move to a commit over the server's channel."""

from __future__ import annotations

import logging
from typing import Any

from core.git import provider_url
from core.pool import PeripheryPool
from protocol.messages import RepoSync

log = logging.getLogger(__name__)

CHANNEL_WAIT = 15.0


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


async def pull(pool: PeripheryPool, name: str, cfg: dict[str, Any], commit: str) -> bool:
    """Move a ``[[repo]]``'s clone on its server to ``commit``; True when it moved."""
    server, path, url = str(cfg.get("server", "")), str(cfg.get("path", "")), repo_url(cfg)
    if not (server and path and url and commit):
        log.warning("pull %s: the repo needs server, path and url", name)
        return False
    try:
        channel = await pool.channel(server, CHANNEL_WAIT)
        result, _ = await channel.request(RepoSync(url=url, commit=commit, path=path))
    except Exception as exc:  # the channel's and the pool's errors alike
        log.warning("pull %s: %s", name, exc)
        return False
    if result.error is not None:
        log.warning("pull %s: %s", name, result.error.message)
        return False
    return True
