"""Plans and applies for the core: read the files of a sync, plan against the store, apply.

Blocking (file reads, SQLite); the HTTP layer calls it in worker threads. The planner it drives
is pure (:mod:`core.plan.planner`).

Syncs: ``local`` is the core's own, over the config's ``resources`` (it never deletes). Every
``resource_sync`` with ``files_on_host = true`` is another, over its ``resource_path`` (relative
paths from the core config's directory). A sync's own options (``delete``, ``match_tags``...)
come from the *stored* state when it is stored, so a sync that changes its own config in the
file it reads (a self-referencing sync) applies that change like any other, and the new options
take effect on the next run, not in the middle of this one. Git-backed syncs arrive with the git
layer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from core.config import CoreConfig
from core.exceptions import CoreError, PlanError, ResourceError, SyncNotFound
from core.git import (
    GitError,
    branch_commit,
    export_and_compare,
    provider_url,
    update_mirror,
)
from core.plan.models import Plan, SyncOptions
from core.plan.planner import DeployInputs, make_plan, sync_options
from core.resources import Known, ResourceSet, validate
from core.resources.models import CONFIG_TYPES, Resource, SourceRef
from core.resources.variables import Values
from core.store import Store

_SHARED_KINDS = ("server", "swarm", "repo", "variable")

log = logging.getLogger(__name__)

LOCAL_SYNC = "local"


@dataclass(frozen=True)
class SyncSource:
    """Where a sync's files are, its options, and for a git-backed sync the commit read and the
    paths changed since the commit last applied."""

    paths: list[str]
    options: SyncOptions
    commit: str = ""
    changed: tuple[str, ...] = ()


# (sync, the commit its files were read at, the files) -> what the deploy list is decided with
InputsOf = Callable[[str, str, ResourceSet], DeployInputs]


class SyncService:
    def __init__(
        self, config: CoreConfig, store: Store, deploy_inputs: InputsOf | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.deploy_inputs = deploy_inputs
        self._base = Path(config.source).resolve().parent if config.source else Path.cwd()
        key = store.fingerprint_key()
        self._key = key
        self.fetch_seconds: dict[str, float] = {}  # the last git fetch of each sync, for events
        self._sources: dict[str, SyncSource] = {}  # the last files read of each git-backed sync

    # -- syncs --------------------------------------------------------------------------------
    def sync_names(self) -> list[str]:
        names = {LOCAL_SYNC}
        for kind, name in self.store.resources():
            if kind == "resource_sync":
                names.add(name)
        return sorted(names)

    def _sync_source(self, name: str, at: str = "") -> SyncSource:
        if name == LOCAL_SYNC:
            return SyncSource(list(self.config.resources), SyncOptions())
        stored = self.store.resources().get(("resource_sync", name))
        local: ResourceSet | None = None
        if stored is not None:
            cfg: dict[str, Any] = stored.config.get("config", {})
        else:
            local = validate(self.config.resources) if self.config.resources else ResourceSet()
            res = local.resources.get(("resource_sync", name))
            if res is None:
                raise SyncNotFound(
                    f'no resource sync is named "{name}"; known: {", ".join(self.sync_names())}'
                )
            cfg = msgspec.to_builtins(res.config)
        if not cfg.get("files_on_host"):
            return self._git_source(name, cfg, local, at)
        paths = [str(self._base / p) for p in cfg.get("resource_path", [])]
        if not paths:
            raise PlanError(f'sync "{name}" has no resource_path; add resource_path = ["..."]')
        return SyncSource(paths, sync_options(cfg))

    def fingerprint(self, value: str) -> str:
        """A keyed fingerprint of a secret value (the key is this database's)."""
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def _slug(self, name: str) -> str:
        return (
            re.sub(r"[^A-Za-z0-9_.-]", "_", name)
            + "-"
            + hashlib.sha1(name.encode()).hexdigest()[:8]
        )

    def mirror_of(self, name: str) -> Path:
        """The core's mirror of a git-backed sync's repository."""
        return Path(self.config.data_dir) / "git" / "syncs" / f"{self._slug(name)}.git"

    def _git_source(
        self, name: str, cfg: dict[str, Any], local: ResourceSet | None, at: str = ""
    ) -> SyncSource:
        """Fetch the sync's repository into the core's mirror and read its files at the head
        of the branch (or at ``at``, a commit the mirror has: the applied one); the paths
        changed since the last applied commit come along."""
        url, branch = self._sync_repo(name, cfg, local)
        slug = self._slug(name)
        data = Path(self.config.data_dir)
        mirror = self.mirror_of(name)
        try:
            if at:
                commit = at
                if not (data / "git" / "trees" / slug / commit).is_dir() and not mirror.is_dir():
                    update_mirror(url, mirror)
            else:
                started = time.perf_counter()
                update_mirror(url, mirror)
                self.fetch_seconds[name] = time.perf_counter() - started
                commit = branch_commit(mirror, branch)
            tree = data / "git" / "trees" / slug / commit
            old = self.store.sync_commit(name)
            changed = tuple(export_and_compare(mirror, commit, tree, old if not at else ""))
        except GitError as exc:
            raise PlanError(f'sync "{name}": {exc}') from exc
        paths = []
        root = tree.resolve()
        for rel in cfg.get("resource_path") or []:
            full = (root / rel).resolve()
            if not full.is_relative_to(root):
                raise PlanError(f'sync "{name}": resource_path {rel!r} leaves the repository')
            paths.append(str(full))
        if not paths:
            raise PlanError(f'sync "{name}" has no resource_path; add resource_path = ["..."]')
        return SyncSource(paths, sync_options(cfg), commit, changed)

    def repository_of(self, name: str) -> tuple[str, str]:
        """The URL and branch a git-backed sync reads."""
        stored = self.store.resources().get(("resource_sync", name))
        if stored is None:
            raise SyncNotFound(f'no resource sync is named "{name}" in the applied state')
        return self._sync_repo(name, stored.config.get("config", {}), None)

    def _sync_repo(
        self, name: str, cfg: dict[str, Any], local: ResourceSet | None
    ) -> tuple[str, str]:
        stored = self.store.resources()
        if local is None:
            local = validate(self.config.resources) if self.config.resources else ResourceSet()
        variables = {
            r.name: r.config.value for r in local.of_kind("variable") if not r.config.is_secret
        }
        for (kind, var), res in stored.items():
            vcfg = res.config.get("config", {})
            if kind == "variable" and not vcfg.get("is_secret"):
                variables[var] = str(vcfg.get("value", ""))
        values = Values(variables, self.config.secrets)
        linked = str(cfg.get("linked_repo") or "")
        if linked:
            if ("repo", linked) in stored:
                rcfg: dict[str, Any] = stored[("repo", linked)].config.get("config", {})
            elif ("repo", linked) in local.resources:
                rcfg = msgspec.to_builtins(local.resources[("repo", linked)].config)
            else:
                raise PlanError(f'sync "{name}": linked_repo "{linked}" is not a known [[repo]]')
            url = str(rcfg.get("url") or "")
            if not url and rcfg.get("repo"):
                url = provider_url(
                    str(rcfg.get("git_provider") or "github.com"),
                    bool(rcfg.get("git_https", True)),
                    str(rcfg["repo"]),
                )
            branch = str(rcfg.get("branch") or "main")
        elif cfg.get("repo"):
            url = provider_url(
                str(cfg.get("git_provider") or "github.com"),
                bool(cfg.get("git_https", True)),
                str(cfg["repo"]),
            )
            branch = str(cfg.get("branch") or "main")
        else:
            raise PlanError(
                f'sync "{name}" names no repository: set linked_repo (a [[repo]]) or repo, or'
                " files_on_host = true with a local resource_path"
            )
        if not url:
            raise PlanError(f'sync "{name}": its repository has no url (or git_provider and repo)')
        try:
            return values.interpolate(url, where=f'sync "{name}" repository url'), branch
        except CoreError as exc:
            raise PlanError(str(exc)) from exc

    # -- plan / apply -------------------------------------------------------------------------
    def known(self) -> Known:
        stored = self.store.resources()
        by_kind: dict[str, set[str]] = {}
        for kind, name in stored:
            by_kind.setdefault(kind, set()).add(name)
        return Known(
            servers=by_kind.get("server", set()),
            swarms=by_kind.get("swarm", set()),
            repos=by_kind.get("repo", set()),
            variables=by_kind.get("variable", set()) | set(self.config.secrets),
        )

    def load(self, name: str, commit: str = "") -> tuple[ResourceSet, SyncOptions]:
        """The sync's resources for a deploy: its own, plus the servers, swarms, repos and
        variables other syncs applied (a stack may link a ``[[repo]]`` another file defines).

        With ``commit`` (a plan's), the files read for that plan are read again, without
        another fetch."""
        cached = self._sources.get(name)
        if commit and cached is not None and cached.commit == commit:
            rs, source = self._validate(name, cached), cached
        else:
            rs, source = self.load_source(name)
        return self._with_shared(rs), source.options

    def load_applied(self, name: str) -> ResourceSet:
        """The sync's resources as of its last apply: a git-backed sync's files at the applied
        commit (no fetch when the mirror has it), files on the host as they are now."""
        applied = self.store.sync_commit(name)
        source = self._sync_source(name, applied) if applied else self._sync_source(name)
        return self._with_shared(self._validate(name, source))

    def _with_shared(self, rs: ResourceSet) -> ResourceSet:
        for (kind, other), stored in self.store.resources().items():
            if kind not in _SHARED_KINDS or (kind, other) in rs.resources:
                continue
            try:
                config = msgspec.convert(stored.config.get("config", {}), CONFIG_TYPES[kind])
            except msgspec.ValidationError:
                continue
            rs.resources[(kind, other)] = Resource(
                kind=kind, name=other, config=config, source=SourceRef(f"state:{stored.sync}", ())
            )
        return rs

    def load_source(self, name: str) -> tuple[ResourceSet, SyncSource]:
        source = self._sync_source(name)
        if source.commit:
            self._sources[name] = source
        return self._validate(name, source), source

    def _validate(self, name: str, source: SyncSource) -> ResourceSet:
        paths = source.paths
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise ResourceError(f'sync "{name}": no such file or directory: {", ".join(missing)}')
        rs = validate(paths, known=self.known())
        if rs.errors:
            raise ResourceError(
                f'sync "{name}": the resource files have {len(rs.errors)} error(s)',
                [f.format() for f in rs.sorted_findings() if f.severity == "error"],
            )
        return rs

    def plan(self, name: str) -> Plan:
        """Plan the sync: its resource changes, and every stack it deploys that is not
        converged (``deploy_inputs``: records, commits, changed files), with why."""
        rs, source = self.load_source(name)
        rev, state = self.store.snapshot()
        inputs = self.deploy_inputs(name, source.commit, rs) if self.deploy_inputs else None
        plan = make_plan(
            sync=name,
            desired=rs,
            state=state,
            base_revision=rev,
            options=source.options,
            inputs=inputs,
            fingerprint=self.fingerprint,
            created_at=time.time(),
            commit=source.commit,
        )
        plan.notes.extend(f.format() for f in rs.sorted_findings())
        self.store.save_plan(plan)
        log.info("sync %s: plan %s (%s)", name, plan.id, plan.counts())
        return plan

    def apply(self, name: str, plan_id: str) -> tuple[Plan, int]:
        plan = self.store.get_plan(plan_id)
        if plan.sync != name:
            raise PlanError(f'plan {plan_id} belongs to sync "{plan.sync}", not "{name}"')
        revision = self.store.apply(plan)
        return self.store.get_plan(plan_id), revision
