"""What a stack's deploy depends on, as one hash: its *spec*. Pure.

A stack is redeployed when its spec changes. The spec covers the stack's config except the fields
whose change alone does not change what runs (``NO_REDEPLOY``: webhooks, alerts, update polling,
the health gate's settings), its ``[[repo]]``'s location, and the values of the variables and
core-held secrets it refers to (as hashes: a secret's fingerprint, never its value). Entry fields
(``description``, ``tags``, ``deploy``, ``after``, ``wait_for``, ``tier``, ``on_drift``) order or
steer deploys and are not part of it. The commit is not part of it either: a new commit redeploys
a stack only when it changes the stack's files (``tracked_files``), as Komodo's sync compares the
compose files' contents (bin/core/src/sync/deploy.rs ``build_cache_for_stack``).

Fields at their default value are left out of the form, so a field added to the models later does
not change every spec (and so redeploy every stack) after an upgrade.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Collection, Iterable, Mapping
from functools import cache
from typing import Any

import msgspec

from core.resources.models import RepoConfig, StackConfig
from core.resources.variables import references

NO_REDEPLOY: frozenset[str] = frozenset(
    {
        "links",
        "send_alerts",
        "webhook_enabled",
        "webhook_secret",
        "webhook_force_deploy",
        "poll_for_updates",
        "auto_update",
        "auto_update_all_services",
        "auto_update_skip_services",
        "health",
    }
)
REPO_FIELDS = ("url", "git_provider", "git_https", "repo", "branch", "commit", "server", "path")
_ENCODER = msgspec.json.Encoder(order="sorted")


@cache
def _defaults(kind: type[msgspec.Struct]) -> dict[str, Any]:
    defaults: dict[str, Any] = msgspec.to_builtins(kind())
    return defaults


def stack_form(config: StackConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The part of a stack's config that its deploys depend on, as plain data."""
    plain: Mapping[str, Any] = (
        msgspec.to_builtins(config) if isinstance(config, StackConfig) else config
    )
    defaults = _defaults(StackConfig)
    return {
        k: v
        for k, v in plain.items()
        if k not in NO_REDEPLOY and (k not in defaults or v != defaults[k])
    }


def repo_form(config: RepoConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    plain: Mapping[str, Any] = (
        msgspec.to_builtins(config) if isinstance(config, RepoConfig) else config
    )
    defaults = _defaults(RepoConfig)
    return {k: plain[k] for k in REPO_FIELDS if k in plain and plain[k] != defaults.get(k)}


def referenced(form: Mapping[str, Any], repo: Mapping[str, Any]) -> list[str]:
    """The ``[[NAME]]`` names a stack's form and its repo's refer to."""
    text = _ENCODER.encode([form, repo]).decode()
    return sorted(references(text))


def spec_of(
    form: Mapping[str, Any], repo: Mapping[str, Any], values: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    """The spec and what it is made of: ``form`` and ``repo`` (from the functions above) and,
    under ``values``, the hash of each variable or secret they refer to (a name missing from
    ``values`` counts as unset). The form is what a changed spec is explained with
    (``config.environment``, ``repo.branch``, ``values.DB_PASSWORD``)."""
    refs = {name: values.get(name, "") for name in referenced(form, repo)}
    full = {"config": dict(form), "repo": dict(repo), "values": refs}
    return hashlib.sha256(_ENCODER.encode(full)).hexdigest(), full


def tracked_files(cfg: StackConfig) -> list[str]:
    """Repo-relative paths whose change at a new commit redeploys the stack: its compose files,
    tracked ``additional_env_files`` and ``config_files``, relative to the run directory."""
    run = cfg.run_directory or "."
    files = [
        *cfg.compose_files(),
        *(f.path for f in cfg.additional_env_files if f.track),
        *(f.path for f in cfg.config_files),
    ]
    return sorted({posixpath.normpath(posixpath.join(run, f)) for f in files})


def matching(tracked: Collection[str], run_directory: str, changed: Iterable[str]) -> list[str]:
    """The ``changed`` paths that touch a stack: its tracked files, and any path under a run
    directory other than the repository's root (a compose file may include files beside it)."""
    files = set(tracked)
    run = posixpath.normpath(run_directory or ".")
    hits = []
    for path in sorted({posixpath.normpath(p) for p in changed}):
        if path in files or (run != "." and path.startswith(run + "/")):
            hits.append(path)
    return hits


def touches(cfg: StackConfig, changed: Iterable[str]) -> list[str]:
    return matching(tracked_files(cfg), cfg.run_directory, changed)
