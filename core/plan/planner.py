"""Diff desired resources against the stored state: pure, deterministic, no I/O.

Inputs are the loaded :class:`~core.resources.ResourceSet`, the stored resources, the state
revision the plan is based on, the sync's options, and the paths that changed at the new commit
(``changed_paths``: one collection for every stack, or a callable giving it per stack, so that the
git layer can answer per repository; for local files without git it is empty).

Deploy list: ``deploy = true`` stacks that are new, whose deploy-relevant config changed, whose
tracked files changed (compose files, tracked env files, config files, all relative to the run
directory), that use a variable that changed, or that name in ``after`` (transitively) a stack
being deployed. Tiers order deploys (``deploy_waves``) but do not trigger them: a change to an
infrastructure stack does not redeploy every application stack.

The plan id is the hash of its content (sync, base revision, changes, deploys), so the same
inputs always give the same id.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Collection, Mapping
from typing import Any

import msgspec

from core.plan.canonical import Fingerprint, canonical_form, content_hash, default_fingerprint
from core.plan.models import (
    DeployItem,
    FieldChange,
    Plan,
    ResourceChange,
    StoredResource,
    SyncOptions,
)
from core.resources.gcpause import gc_paused
from core.resources.graph import is_barrier, stack_graph
from core.resources.models import Resource, ResourceSet, StackConfig
from core.resources.variables import references

ChangedPaths = Collection[str] | Callable[[Resource], Collection[str]]

# Stack fields whose change alone does not call for a redeploy.
NO_REDEPLOY_FIELDS = frozenset(
    {
        "(sync)",  # another sync took the stack over: same stack, nothing to redeploy
        "description",
        "tags",
        "deploy",
        "after",
        "tier",
        "on_drift",
        "config.links",
        "config.send_alerts",
        "config.webhook_enabled",
        "config.webhook_secret",
        "config.webhook_force_deploy",
        "config.poll_for_updates",
        "config.auto_update",
        "config.auto_update_all_services",
        "config.auto_update_skip_services",
        "config.health",
    }
)
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


def tracked_files(cfg: StackConfig) -> list[str]:
    """Repo-relative paths whose change redeploys the stack."""
    run = cfg.run_directory or "."
    files = [
        *cfg.compose_files(),
        *(f.path for f in cfg.additional_env_files if f.track),
        *(f.path for f in cfg.config_files),
    ]
    return sorted({posixpath.normpath(posixpath.join(run, f)) for f in files})


def make_plan(
    *,
    sync: str,
    desired: ResourceSet,
    state: Mapping[tuple[str, str], StoredResource],
    base_revision: int,
    options: SyncOptions | None = None,
    changed_paths: ChangedPaths = (),
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
            changed_paths,
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
    changed_paths: ChangedPaths,
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

    changes: list[ResourceChange] = []
    changed_fields: dict[tuple[str, str], list[str]] = {}
    for key in sorted(wanted, key=_order):
        res = wanted[key]
        form = canonical_form(res, fingerprint)
        new_hash = content_hash(form)
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

    deploys, waves = _deploys(desired, wanted, changes, changed_fields, changed_paths)
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
    )


def _order(key: tuple[str, str]) -> tuple[int, str]:
    kind, name = key
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), name)


def _deploys(
    desired: ResourceSet,
    wanted: Mapping[tuple[str, str], Resource],
    changes: list[ResourceChange],
    changed_fields: Mapping[tuple[str, str], list[str]],
    changed_paths: ChangedPaths,
) -> tuple[list[DeployItem], list[list[str]]]:
    created = {(c.kind, c.name) for c in changes if c.action == "create"}
    changed_vars = {c.name for c in changes if c.kind == "variable"}
    reasons: dict[str, list[str]] = {}
    stacks = [r for r in wanted.values() if r.kind == "stack"]
    for res in stacks:
        if not res.deploy:
            continue
        why: list[str] = []
        if res.key in created:
            why.append("new stack")
        relevant = [
            f
            for f in changed_fields.get(res.key, ())
            if f not in NO_REDEPLOY_FIELDS
            and not any(f.startswith(n + ".") for n in NO_REDEPLOY_FIELDS)
        ]
        if relevant:
            why.append("config changed: " + ", ".join(relevant))
        cfg: StackConfig = res.config
        paths = changed_paths(res) if callable(changed_paths) else changed_paths
        if paths:
            hit = sorted(set(tracked_files(cfg)) & {posixpath.normpath(p) for p in paths})
            if hit:
                why.append("files changed: " + ", ".join(hit))
        if changed_vars:
            used = set(references(cfg.environment))
            for c in (*cfg.pre_deploy, *cfg.post_deploy):
                used.update(references(c.command))
            hit = sorted(used & changed_vars)
            if hit:
                why.append("variables changed: " + ", ".join(hit))
        if why:
            reasons[res.name] = why
    all_stacks = desired.stacks()
    names = {s.name for s in all_stacks}
    triples = [(s.name, s.tier, [a for a in s.after if a in names]) for s in all_stacks]
    if reasons:
        after_only = stack_graph(triples, desired.tiers, tier_edges=False)
        deployable = {s.name for s in stacks if s.deploy}
        for name, via in after_only.dependents(reasons).items():
            if name in deployable and name not in reasons:
                reasons[name] = [f'after "{via}", which is deployed']
    if not reasons:
        return [], []
    try:
        waves = stack_graph(triples, desired.tiers).waves()
    except ValueError:
        waves = [sorted(reasons)]  # a cycle is reported by the checks; keep the plan readable
    ordered = [[n for n in w if n in reasons and not is_barrier(n)] for w in waves]
    ordered = [w for w in ordered if w]
    flat = [n for w in ordered for n in w]
    return [DeployItem(n, reasons[n]) for n in flat], ordered
