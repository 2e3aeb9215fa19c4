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
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import msgspec

from core.config import CoreConfig
from core.exceptions import PlanError, ResourceError, SyncNotFound
from core.plan.models import Plan, SyncOptions
from core.plan.planner import make_plan, sync_options
from core.resources import Known, ResourceSet, validate
from core.store import Store

log = logging.getLogger(__name__)

LOCAL_SYNC = "local"


class SyncService:
    def __init__(self, config: CoreConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self._base = Path(config.source).resolve().parent if config.source else Path.cwd()
        key = store.fingerprint_key()
        self._fingerprint = lambda v: hmac.new(key, v.encode(), hashlib.sha256).hexdigest()

    # -- syncs --------------------------------------------------------------------------------
    def sync_names(self) -> list[str]:
        names = {LOCAL_SYNC}
        for kind, name in self.store.resources():
            if kind == "resource_sync":
                names.add(name)
        return sorted(names)

    def _sync_source(self, name: str) -> tuple[list[str], SyncOptions]:
        if name == LOCAL_SYNC:
            return list(self.config.resources), SyncOptions()
        stored = self.store.resources().get(("resource_sync", name))
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
            raise PlanError(
                f'sync "{name}" reads a git repository; git-backed syncs are not supported by'
                " this core yet (set files_on_host = true with a local resource_path)"
            )
        paths = [str(self._base / p) for p in cfg.get("resource_path", [])]
        if not paths:
            raise PlanError(f'sync "{name}" has no resource_path; add resource_path = ["..."]')
        return paths, sync_options(cfg)

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

    def load(self, name: str) -> tuple[ResourceSet, SyncOptions]:
        paths, options = self._sync_source(name)
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise ResourceError(f'sync "{name}": no such file or directory: {", ".join(missing)}')
        rs = validate(paths, known=self.known())
        if rs.errors:
            raise ResourceError(
                f'sync "{name}": the resource files have {len(rs.errors)} error(s)',
                [f.format() for f in rs.sorted_findings() if f.severity == "error"],
            )
        return rs, options

    def plan(self, name: str, *, changed_paths: Collection[str] = ()) -> Plan:
        rs, options = self.load(name)
        rev, state = self.store.snapshot()
        plan = make_plan(
            sync=name,
            desired=rs,
            state=state,
            base_revision=rev,
            options=options,
            changed_paths=changed_paths,
            fingerprint=self._fingerprint,
            created_at=time.time(),
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
