"""The desired state the reconciler converges to, and what a stack's deploy is made from.

``AppliedState`` is the core's: the applied resources in the store (what the last apply of each
sync wrote), each sync's applied commit, the branch heads learned (verified pushes, polls, earlier
deploys), and the variable values of the sync's files. ``FixedResources`` is a resource set given
as it is (the bootstrap deploys from its own files before any core runs).

Both answer the same questions: which stacks exist (``knows``), in what order they deploy
(``graph``), what a stack's deploy is when it starts (``prepare``: the newest desired state wins),
and, for ``AppliedState``, whether each stack is converged (``verdicts``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
import msgspec

from core.config import CoreConfig
from core.dependency_graph import Graph, stack_graph
from core.deploy.deployer import Prepared
from core.deploy.jobs import JobError, Source, plan_job, source_of, values_of
from core.deploy.networks import with_network_order
from core.exceptions import CoreError
from core.git import GitError, resolve_branch
from core.plan.canonical import canonical_form, content_hash
from core.plan.models import StoredResource
from core.plan.planner import DeployInputs
from core.reconcile.convergence import Desired, Record, Verdict, judge
from core.reconcile.spec import repo_form, spec_of, stack_form, tracked_files
from core.resources.models import CONFIG_TYPES, Resource, ResourceSet, SourceRef, StackConfig
from core.store import Store
from core.store.deploys import DeployRecords
from core.store.intents import Heads

log = logging.getLogger(__name__)

Fingerprint = Callable[[str], str]


class DesiredState(Protocol):
    def knows(self, stack: str) -> bool: ...

    async def refresh(self) -> None: ...

    async def graph(self, targets: Collection[str] = ()) -> Graph: ...

    async def prepare(self, stack: str, pin: str = "") -> Prepared: ...


def value_hashes(
    variables: Mapping[str, str], secrets: Mapping[str, str], fingerprint: Fingerprint
) -> dict[str, str]:
    """What a spec takes of each name a stack may refer to: a variable's stored hash, a
    core-held secret's keyed fingerprint (a secret wins over a variable of its name, as
    ``Values`` interpolates)."""
    out = dict(variables)
    for name, value in secrets.items():
        out[name] = "secret:" + fingerprint(value)
    return out


def typed(stored: Mapping[tuple[str, str], StoredResource]) -> ResourceSet:
    """The stored (canonical) resources as the typed models the loader makes."""
    rs = ResourceSet()
    for (kind, name), res in stored.items():
        cls = CONFIG_TYPES.get(kind)
        if cls is None:
            continue
        entry = res.config
        try:
            config = msgspec.convert(entry.get("config", {}), cls)
        except msgspec.ValidationError as exc:
            log.warning("stored %s %s no longer fits its model: %s", kind, name, exc)
            continue
        rs.resources[(kind, name)] = Resource(
            kind=kind,
            name=name,
            config=config,
            source=SourceRef(f"state:{res.sync}", ()),
            description=str(entry.get("description", "")),
            tags=list(entry.get("tags", [])),
            deploy=bool(entry.get("deploy", False)),
            after=list(entry.get("after", [])),
            tier=str(entry.get("tier", "")),
            on_drift=str(entry.get("on_drift", "")),
            wait_for=list(entry.get("wait_for", [])),
        )
    return rs


def graph_of(rs: ResourceSet, tiers: list[str]) -> Graph:
    names = {s.name for s in rs.stacks()}
    return stack_graph(
        [
            (
                s.name,
                s.tier if s.tier in tiers else "",
                [a for a in s.after if a in names],
                [w for w in s.wait_for if w in names],
            )
            for s in rs.stacks()
        ],
        tiers,
    )


def _slug(text: str) -> str:
    return (
        re.sub(r"[^A-Za-z0-9_.-]", "_", text)[-40:]
        + "-"
        + hashlib.sha1(text.encode()).hexdigest()[:10]
    )


def stack_mirror(data_dir: str, url: str) -> Path:
    """Where the core mirrors a stack's repository that is not its sync's (polling, webhooks)."""
    return Path(data_dir) / "git" / "stacks" / f"{_slug(url)}.git"


class AppliedState:
    def __init__(
        self,
        config: CoreConfig,
        store: Store,
        records: DeployRecords,
        heads: Heads,
        load_sync: Callable[[str], ResourceSet],
        sync_repository: Callable[[str], tuple[str, str]],
        sync_mirror: Callable[[str], Path],
        fingerprint: Fingerprint,
    ) -> None:
        self.config = config
        self.store = store
        self.records = records
        self.heads = heads
        self._load_sync = load_sync
        self._sync_repository = sync_repository
        self._sync_mirror = sync_mirror
        self._fingerprint = fingerprint
        self._names: set[str] = set()
        self._lock = threading.Lock()
        self._cache: tuple[int, ResourceSet, dict[str, str]] | None = None
        self._loaded: dict[str, tuple[int, ResourceSet]] = {}
        self._sync_repo: dict[str, tuple[int, tuple[str, str] | None]] = {}

    # -- what exists ---------------------------------------------------------------------------
    def knows(self, stack: str) -> bool:
        return stack in self._names

    async def refresh(self) -> None:
        await anyio.to_thread.run_sync(self._state)

    def _state(self) -> tuple[int, ResourceSet, dict[str, str]]:
        """The applied resources, typed, and the value hashes, cached per state revision."""
        with self._lock:
            rev, stored = self.store.snapshot()
            if self._cache is not None and self._cache[0] == rev:
                return self._cache
            rs = typed(stored)
            rs.tiers = self.store.tiers()
            variables = {n: r.hash for (k, n), r in stored.items() if k == "variable"}
            hashes = value_hashes(variables, self.config.secrets, self._fingerprint)
            self._cache = (rev, rs, hashes)
            self._names = {s.name for s in rs.stacks()}
            return self._cache

    async def graph(self, targets: Collection[str] = ()) -> Graph:
        """The deploy order; with ``targets``, also after the stacks that make a network a
        target uses (core/deploy/networks.py)."""
        _, rs, _ = await anyio.to_thread.run_sync(self._state)
        graph = graph_of(rs, rs.tiers)
        if not targets:
            return graph
        jobs = {}
        for name in sorted(targets):
            try:
                jobs[name] = (await self.prepare(name)).job  # resolves (and records) heads
            except (JobError, CoreError):
                continue
        return await with_network_order(rs, jobs, graph, self.config)

    def deployable(self) -> list[str]:
        """The stacks a sync deploys (``deploy = true``), by name."""
        _, rs, _ = self._state()
        return sorted(s.name for s in rs.stacks() if s.deploy)

    def on_drift(self, stack: str) -> str:
        _, rs, _ = self._state()
        res = rs.resources.get(("stack", stack))
        return res.on_drift or "alert" if res is not None else "alert"

    # -- desired per stack ---------------------------------------------------------------------
    def _spec(
        self, rs: ResourceSet, stack: Resource, hashes: Mapping[str, str]
    ) -> tuple[str, dict[str, Any]]:
        cfg: StackConfig = stack.config
        form = stack_form(cfg)
        repo = rs.resources.get(("repo", cfg.linked_repo)) if cfg.linked_repo else None
        rform = repo_form(repo.config if repo is not None else None)
        return spec_of(form, rform, hashes)

    def _repo_of_sync(self, sync: str, rev: int) -> tuple[str, str] | None:
        cached = self._sync_repo.get(sync)
        if cached is not None and cached[0] == rev:
            return cached[1]
        try:
            repo: tuple[str, str] | None = self._sync_repository(sync)
        except CoreError:
            repo = None
        self._sync_repo[sync] = (rev, repo)
        return repo

    def _desired_commit(
        self, sync: str, src: Source, rev: int, heads: Mapping[tuple[str, str], str]
    ) -> str:
        if src.commit:
            return src.commit
        if self._repo_of_sync(sync, rev) == (src.url, src.branch):
            applied = self.store.sync_commit(sync)
            if applied:
                return applied
        return heads.get((src.url, src.branch), "")

    def changed_files(
        self, url: str, old: str, new: str, also: Path | None = None
    ) -> Collection[str] | None:
        """Paths changed between two commits of ``url``'s repository, from a mirror the core
        has (None when none has both commits: then the stack counts as changed)."""
        candidates = [stack_mirror(self.config.data_dir, url)] + ([also] if also else [])
        rev = self.store.revision()
        for kind, name in self.store.resources():
            if kind == "resource_sync":
                repo = self._repo_of_sync(name, rev)
                if repo is not None and repo[0] == url:
                    candidates.append(self._sync_mirror(name))
        for mirror in candidates:
            if not mirror.is_dir():
                continue
            try:
                done = subprocess.run(
                    [
                        "git",
                        "--git-dir",
                        str(mirror),
                        "diff",
                        "--name-only",
                        "--no-renames",
                        old,
                        new,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if done.returncode == 0:
                return [line for line in done.stdout.splitlines() if line]
        return None

    def deploy_inputs(self, sync: str, commit: str, rs: ResourceSet) -> DeployInputs:
        """What a plan of ``sync`` (its files ``rs``, read at ``commit``) decides its deploy list
        with: the records, the core's secrets' hashes, each stack's commit, changed files."""
        rev = self.store.revision()
        heads = self.heads.all()
        values = values_of(rs, self.config.secrets)
        own = None
        if commit:
            try:
                own = self._sync_repository(sync)
            except CoreError:
                own = None
        mirror = self._sync_mirror(sync) if commit else None

        def source(res: Resource) -> Source | None:
            try:
                return source_of(rs, res, values, self.config)
            except (JobError, CoreError):
                return None

        def commit_of(res: Resource) -> str:
            src = source(res)
            if src is None:
                return ""
            if src.commit:
                return src.commit
            if own is not None and (src.url, src.branch) == own:
                return commit
            return heads.get((src.url, src.branch), "") or self._desired_commit(
                sync, src, rev, heads
            )

        def changed(res: Resource, old: str, new: str) -> Collection[str] | None:
            src = source(res)
            return self.changed_files(src.url, old, new, mirror) if src is not None else None

        return DeployInputs(
            records=self.records.records(),
            secret_hashes=value_hashes({}, self.config.secrets, self._fingerprint),
            commit_of=commit_of,
            changed_files=changed,
            owners=self.store.defined_by(),
        )

    def desired_commits(self) -> dict[str, str]:
        """The commit each applied stack should run ("" where it is resolved when it deploys)."""
        rev, rs, _ = self._state()
        heads = self.heads.all()
        values = values_of(rs, self.config.secrets)
        stored = self.store.resources()
        out = {}
        for stack in rs.stacks():
            try:
                src = source_of(rs, stack, values, self.config)
            except (JobError, CoreError):
                src = None
            if src is None:
                out[stack.name] = ""
                continue
            out[stack.name] = self._desired_commit(
                stored[("stack", stack.name)].sync, src, rev, heads
            )
        return out

    def verdicts(self, only: Collection[str] | None = None) -> dict[str, Verdict]:
        """Every applied stack's verdict (blocking: store reads, ``git diff`` in mirrors)."""
        rev, rs, hashes = self._state()
        records = self.records.records()
        heads = self.heads.all()
        values = values_of(rs, self.config.secrets)
        stored = self.store.resources()
        out: dict[str, Verdict] = {}
        diffs: dict[tuple[str, str, str], Collection[str] | None] = {}
        for stack in rs.stacks():
            if only is not None and stack.name not in only:
                continue
            spec, form = self._spec(rs, stack, hashes)
            sync = stored[("stack", stack.name)].sync
            try:
                src = source_of(rs, stack, values, self.config)
                commit = self._desired_commit(sync, src, rev, heads) if src else ""
                url = src.url if src else ""
            except (JobError, CoreError):
                commit, url = "", ""

            def changed(old: str, new: str, url: str = url) -> Collection[str] | None:
                key = (url, old, new)
                if key not in diffs:
                    diffs[key] = self.changed_files(url, old, new) if url else None
                return diffs[key]

            cfg: StackConfig = stack.config
            desired = Desired(
                stack.name,
                spec,
                form,
                commit,
                tuple(tracked_files(cfg)),
                cfg.run_directory,
            )
            out[stack.name] = judge(desired, records.get(stack.name, Record()), changed)
        return out

    # -- a deploy ------------------------------------------------------------------------------
    def _load(self, sync: str, rev: int) -> ResourceSet:
        cached = self._loaded.get(sync)
        if cached is not None and cached[0] == rev:
            return cached[1]
        rs = self._load_sync(sync)
        self._loaded[sync] = (rev, rs)
        return rs

    def _prepare(self, stack: str, pin: str) -> tuple[Prepared, Source | None, str]:
        rev, applied, hashes = self._state()
        stored = self.store.resources()
        entry = stored.get(("stack", stack))
        resource = applied.resources.get(("stack", stack))
        if entry is None or resource is None:
            raise JobError(f"stack {stack!r} is no longer in the applied resources")
        # The sync's files give the values (secret variables live only there); the applied
        # state gives the stack, its repo, servers and swarms.
        try:
            files = self._load(entry.sync, rev)
        except CoreError as exc:
            log.warning("stack %s: the files of sync %s: %s", stack, entry.sync, exc)
            files = ResourceSet()
        rs = ResourceSet(resources={**applied.resources}, tiers=applied.tiers)
        for key, res in files.resources.items():
            if key[0] == "variable":
                rs.resources[key] = res
        values = values_of(rs, self.config.secrets)
        jp = plan_job(rs, stack, values, self.config)
        spec, form = self._spec(applied, resource, hashes)
        src = jp.source
        if src is None:  # files on the host, or file_contents: no commit to resolve
            return Prepared(jp, jp.job, values, spec, form), None, ""
        commit = pin or self._desired_commit(entry.sync, src, rev, {})
        job = replace(jp.job, repo_url=src.url, commit=commit)
        return Prepared(jp, job, values, spec, form), src, commit

    async def prepare(self, stack: str, pin: str = "") -> Prepared:
        prepared, src, commit = await anyio.to_thread.run_sync(self._prepare, stack, pin)
        if commit or src is None:
            return prepared
        try:
            head = await resolve_branch(src.url, src.branch, credentials=src.credentials)
        except GitError as exc:
            raise JobError(f"stack {stack!r}: {exc}") from exc
        await anyio.to_thread.run_sync(self.heads.set, src.url, src.branch, head, "deploy")
        return replace(prepared, job=replace(prepared.job, commit=head))


@dataclass
class FixedResources:
    """A resource set deployed as it is (the bootstrap's)."""

    rs: ResourceSet
    config: CoreConfig
    fingerprint: Fingerprint

    @property
    def secrets(self) -> Mapping[str, str]:
        return self.config.secrets

    def knows(self, stack: str) -> bool:
        return ("stack", stack) in self.rs.resources

    async def refresh(self) -> None:
        return None

    async def graph(self, targets: Collection[str] = ()) -> Graph:
        graph = graph_of(self.rs, self.rs.tiers)
        if not targets:
            return graph
        jobs = {}
        for name in sorted(targets):
            try:
                jobs[name] = (await self.prepare(name)).job
            except (JobError, CoreError):
                continue
        return await with_network_order(self.rs, jobs, graph, self.config)

    async def prepare(self, stack: str, pin: str = "") -> Prepared:
        rs = self.rs
        values = values_of(rs, dict(self.secrets))
        jp = plan_job(rs, stack, values, self.config)
        variables = {
            r.name: content_hash(canonical_form(r, self.fingerprint))
            for r in rs.of_kind("variable")
        }
        hashes = value_hashes(variables, self.secrets, self.fingerprint)
        res = rs.resources[("stack", stack)]
        cfg: StackConfig = res.config
        repo = rs.resources.get(("repo", cfg.linked_repo)) if cfg.linked_repo else None
        spec, form = spec_of(stack_form(cfg), repo_form(repo.config if repo else None), hashes)
        src = jp.source
        if src is None:
            return Prepared(jp, jp.job, values, spec, form)
        commit = pin or src.commit
        if not commit:
            try:
                commit = await resolve_branch(src.url, src.branch, credentials=src.credentials)
            except GitError as exc:
                raise JobError(f"stack {stack!r}: {exc}") from exc
        job = replace(jp.job, repo_url=src.url, commit=commit)
        return Prepared(jp, job, values, spec, form)
