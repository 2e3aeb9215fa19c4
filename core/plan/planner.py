"""Diff desired resources against the stored state, and list the stacks to deploy: pure,
deterministic, no I/O.

Inputs are the loaded :class:`~core.resources.ResourceSet`, the stored resources, the state
revision the plan is based on, the sync's options, and for the deploy list (``DeployInputs``):
each stack's convergence record (its last deploy and the last healthy one's spec and commit, and
what the engine reports), the hashes of the core-held secrets, the commit each stack should run,
and a way to tell which files changed between two commits.

Deploy list: every ``deploy = true`` stack that is not converged (core/reconcile/convergence.py):
new, never deployed healthy, last deploy failed / skipped / interrupted, its spec changed since its
last healthy deploy (config, its repo, the variables it refers to), its files changed at the new
commit, or drifted; and, as Komodo's sync does (bin/core/src/sync/deploy.rs: a stack whose
``after`` parent deploys is deployed too, "parent dependency is deploying"), every stack that
names one of those in ``after`` (transitively). ``wait_for`` orders without that cascade; tiers
order deploys but do not trigger them.

Ownership: a resource has one owner. When another sync's last apply still defines a resource
this sync defines too, the plan fails naming both, unless one sync defines the other: a sync
hands its resources over to a sync it defines (the core's ``local`` file bootstrapping a
self-referencing git sync), and the parent's copy is then left alone with a note.

The plan id is the hash of its content (sync, base revision, changes, deploys), so the same
inputs always give the same id.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from core.dependency_graph import is_barrier, stack_graph
from core.exceptions import PlanError
from core.plan.canonical import Fingerprint, canonical_form, content_hash, default_fingerprint
from core.plan.models import (
    DeployItem,
    FieldChange,
    Plan,
    ResourceChange,
    StoredResource,
    SyncOptions,
)
from core.reconcile.convergence import Desired, Record, judge
from core.reconcile.spec import repo_form, spec_of, stack_form, tracked_files
from core.resources.gcpause import gc_paused
from core.resources.models import Resource, ResourceSet, StackConfig

__all__ = [
    "DeployInputs",
    "diff_fields",
    "make_plan",
    "stack_spec",
    "sync_options",
    "tracked_files",
]

KIND_ORDER = ("variable", "server", "swarm", "repo", "resource_sync", "stack", "procedure")


def sync_options(config: Mapping[str, Any] | None) -> SyncOptions:
    """Options of a stored or loaded resource_sync config (canonical dict)."""
    if not config:
        return SyncOptions()
    return SyncOptions(
        delete=bool(config.get("delete") or config.get("managed")),
        match_tags=list(config.get("match_tags") or []),
        include_resources=bool(config.get("include_resources", True)),
        include_variables=bool(config.get("include_variables", True)),
    )


def diff_fields(old: Any, new: Any, prefix: str = "") -> list[FieldChange]:
    """Field-level differences, dotted paths, tables recursed, lists compared whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[FieldChange] = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else key
            if key not in old:
                out.append(FieldChange(path, None, new[key]))
            elif key not in new:
                out.append(FieldChange(path, old[key], None))
            elif old[key] != new[key]:
                out.extend(diff_fields(old[key], new[key], path))
        return out
    return [] if old == new else [FieldChange(prefix, old, new)]


def _matches(tags: Collection[str], match_tags: Collection[str]) -> bool:
    return all(t in tags for t in match_tags)


@dataclass(frozen=True)
class DeployInputs:
    """What the deploy list is decided with, besides the resources (see the module doc)."""

    records: Mapping[str, Record] = field(default_factory=dict)
    secret_hashes: Mapping[str, str] = field(default_factory=dict)  # core-held secrets
    commit_of: Callable[[Resource], str] | None = None  # the commit a stack should run
    changed_files: Callable[[Resource, str, str], Collection[str] | None] | None = None
    owners: Mapping[tuple[str, str], Collection[str]] = field(default_factory=dict)


def make_plan(
    *,
    sync: str,
    desired: ResourceSet,
    state: Mapping[tuple[str, str], StoredResource],
    base_revision: int,
    options: SyncOptions | None = None,
    inputs: DeployInputs | None = None,
    fingerprint: Fingerprint = default_fingerprint,
    created_at: float = 0.0,
    commit: str = "",
) -> Plan:
    with gc_paused():
        plan = _make_plan(
            sync,
            desired,
            state,
            base_revision,
            options,
            inputs or DeployInputs(),
            fingerprint,
            created_at,
            commit,
        )
    return plan


def _make_plan(
    sync: str,
    desired: ResourceSet,
    state: Mapping[tuple[str, str], StoredResource],
    base_revision: int,
    options: SyncOptions | None,
    inputs: DeployInputs,
    fingerprint: Fingerprint,
    created_at: float,
    commit: str = "",
) -> Plan:
    opts = options or SyncOptions()
    notes: list[str] = []
    wanted: dict[tuple[str, str], Resource] = {}
    for key, res in desired.resources.items():
        if res.kind == "variable" and not opts.include_variables:
            continue
        if res.kind != "variable" and not opts.include_resources:
            continue
        if opts.match_tags and not _matches(res.tags, opts.match_tags):
            continue
        wanted[key] = res
    _owners(sync, desired, wanted, state, inputs.owners, notes)

    changes: list[ResourceChange] = []
    hashes: dict[tuple[str, str], str] = {}
    changed_fields: dict[tuple[str, str], list[str]] = {}
    for key in sorted(wanted, key=_order):
        res = wanted[key]
        form = canonical_form(res, fingerprint)
        new_hash = content_hash(form)
        hashes[key] = new_hash
        old = state.get(key)
        if old is not None and old.hash == new_hash and old.sync == sync:
            continue  # unchanged: the common case, no diff and no plain copy needed
        new: dict[str, Any] = msgspec.to_builtins(form)
        if old is None:
            changes.append(
                ResourceChange(
                    res.kind, res.name, "create", diff_fields({}, new), None, new_hash, new
                )
            )
            continue
        fields = diff_fields(old.config, new)
        if old.sync != sync:
            fields.append(FieldChange("(sync)", old.sync, sync))
        if fields or old.hash != new_hash:
            changes.append(
                ResourceChange(res.kind, res.name, "update", fields, old.hash, new_hash, new)
            )
            changed_fields[key] = [f.path for f in fields]
    for key in sorted(state, key=_order):
        old = state[key]
        if key in wanted or old.sync != sync:
            continue
        if opts.match_tags and not _matches(old.config.get("tags", []), opts.match_tags):
            continue
        if key in desired.resources:  # filtered out by include_* options, not removed
            continue
        if opts.delete:
            changes.append(
                ResourceChange(
                    old.kind, old.name, "delete", diff_fields(old.config, {}), old.hash, None, None
                )
            )
        else:
            notes.append(
                f"{old.kind} {old.name} is no longer in the files; kept, since the"
                " sync does not delete (set delete = true to remove it)"
            )

    deploys, waves = _deploys(desired, wanted, changes, hashes, inputs, fingerprint)
    body = {
        "sync": sync,
        "base_revision": base_revision,
        "changes": [(c.kind, c.name, c.action, c.old_hash, c.new_hash) for c in changes],
        "deploys": [(d.stack, d.reasons) for d in deploys],
    }
    if commit:
        body["commit"] = commit
    return Plan(
        id=content_hash(body)[:24],
        sync=sync,
        base_revision=base_revision,
        changes=changes,
        deploys=deploys,
        deploy_waves=waves,
        notes=notes,
        created_at=created_at,
        commit=commit,
        tiers=list(desired.tiers),
        defines=sorted(wanted),
    )


def _owners(
    sync: str,
    desired: ResourceSet,
    wanted: dict[tuple[str, str], Resource],
    state: Mapping[tuple[str, str], StoredResource],
    owners: Mapping[tuple[str, str], Collection[str]],
    notes: list[str],
) -> None:
    """One owner per resource (see the module doc). Drops from ``wanted`` what a sync this one
    defines owns; raises ``PlanError`` for two peers defining the same resource."""
    conflicts: list[str] = []
    for key in sorted(wanted):
        old = state.get(key)
        if old is None or old.sync == sync:
            continue
        owner = old.sync
        if owner not in owners.get(key, ()):
            continue  # the owner's files no longer define it: this sync takes it over
        if ("resource_sync", owner) in desired.resources:
            del wanted[key]  # handed over to a sync this one defines
            notes.append(
                f"{key[0]} {key[1]}: owned by sync {owner} (defined here too); this file's copy"
                f" is not applied, sync {owner} keeps it"
            )
            continue
        parent = state.get(("resource_sync", sync))
        if parent is not None and parent.sync == owner:
            continue  # this sync is the owner's child: it takes the resource over
        conflicts.append(f"{key[0]} {key[1]} (also defined by sync {owner})")
    if conflicts:
        more = f"; and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
        shown = "; ".join(conflicts[:10]) + more
        raise PlanError(
            f"sync {sync} defines resources another sync owns: {shown}. A resource has one"
            " owner: remove it from one of the syncs' files (or let one sync define the other,"
            " which hands it over)"
        )


def _order(key: tuple[str, str]) -> tuple[int, str]:
    kind, name = key
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), name)


def stack_spec(
    desired: ResourceSet,
    stack: Resource,
    variables: Mapping[str, str] | None = None,
    secret_hashes: Mapping[str, str] | None = None,
    fingerprint: Fingerprint = default_fingerprint,
) -> tuple[str, dict[str, Any]]:
    """A stack's spec and its form (core/reconcile/spec.py) in ``desired``: ``variables`` are
    the variables' canonical hashes where known (else computed with ``fingerprint``), and
    ``secret_hashes`` the core-held secrets'."""
    values = dict(variables or {})
    for res in desired.of_kind("variable"):
        values.setdefault(res.name, content_hash(canonical_form(res, fingerprint)))
    values.update(secret_hashes or {})
    cfg: StackConfig = stack.config
    repo = desired.resources.get(("repo", cfg.linked_repo)) if cfg.linked_repo else None
    return spec_of(stack_form(cfg), repo_form(repo.config if repo else None), values)


def _deploys(
    desired: ResourceSet,
    wanted: Mapping[tuple[str, str], Resource],
    changes: list[ResourceChange],
    hashes: Mapping[tuple[str, str], str],
    inputs: DeployInputs,
    fingerprint: Fingerprint = default_fingerprint,
) -> tuple[list[DeployItem], list[list[str]]]:
    created = {(c.kind, c.name) for c in changes if c.action == "create"}
    values = {name: h for (kind, name), h in hashes.items() if kind == "variable"}
    reasons: dict[str, list[str]] = {}
    stacks = [r for r in wanted.values() if r.kind == "stack"]
    for res in stacks:
        if not res.deploy:
            continue
        cfg: StackConfig = res.config
        spec, form = stack_spec(desired, res, values, inputs.secret_hashes, fingerprint)
        commit = inputs.commit_of(res) if inputs.commit_of is not None else ""

        def files(old: str, new: str, res: Resource = res) -> Collection[str] | None:
            changed = inputs.changed_files
            return changed(res, old, new) if changed is not None else None

        verdict = judge(
            Desired(res.name, spec, form, commit, tuple(tracked_files(cfg)), cfg.run_directory),
            inputs.records.get(res.name, Record()),
            files,
        )
        if not verdict.needs_deploy and not verdict.converged:
            continue  # a deploy in flight brings what is desired (the plan's notes say so)
        why = list(verdict.reasons)
        if res.key in created:
            why = [
                "new stack",
                *(
                    r
                    for r, k in zip(verdict.reasons, verdict.kinds, strict=True)
                    if k not in ("never",)
                ),
            ]
        if why:
            reasons[res.name] = why
    all_stacks = desired.stacks()
    names = {s.name for s in all_stacks}
    entries = [
        (
            s.name,
            s.tier,
            [a for a in s.after if a in names],
            [w for w in s.wait_for if w in names],
        )
        for s in all_stacks
    ]
    if reasons:
        cascade = stack_graph(entries, desired.tiers, tier_edges=False)
        deployable = {s.name for s in stacks if s.deploy}
        for name, via in cascade.dependents(reasons).items():
            if name in deployable and name not in reasons:
                reasons[name] = [f'after "{via}", which is deployed']
    if not reasons:
        return [], []
    try:
        waves = stack_graph(entries, desired.tiers).waves()
    except ValueError:
        waves = [sorted(reasons)]  # a cycle is reported by the checks; keep the plan readable
    ordered = [[n for n in w if n in reasons and not is_barrier(n)] for w in waves]
    ordered = [w for w in ordered if w]
    flat = [n for w in ordered for n in w]
    return [DeployItem(n, reasons[n]) for n in flat], ordered
