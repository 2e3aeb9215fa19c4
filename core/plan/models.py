"""The plan: what an apply will change, and which stacks will then deploy and why.

A plan never holds a secret: configs are the templates of the resource files (``[[NAME]]`` is
kept, not substituted) and a secret variable's value is replaced by ``***`` plus a keyed
fingerprint, so that a change is still detected.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Action = Literal["create", "update", "delete"]


class FieldChange(msgspec.Struct, frozen=True):
    path: str  # dotted, e.g. "config.environment"
    old: Any = None
    new: Any = None


class ResourceChange(msgspec.Struct):
    kind: str
    name: str
    action: Action
    fields: list[FieldChange] = msgspec.field(default_factory=list)
    old_hash: str | None = None
    new_hash: str | None = None
    new_config: dict[str, Any] | None = None  # canonical; None for a delete


class DeployItem(msgspec.Struct):
    stack: str
    reasons: list[str]


class Plan(msgspec.Struct):
    id: str
    sync: str
    base_revision: int
    changes: list[ResourceChange] = msgspec.field(default_factory=list)
    deploys: list[DeployItem] = msgspec.field(default_factory=list)
    deploy_waves: list[list[str]] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    created_at: float = 0.0
    applied_at: float | None = None
    commit: str = ""  # the commit of a git-backed sync's files ("" for files on the host)
    tiers: list[str] = msgspec.field(default_factory=list)  # the files' tier order
    # Every resource the sync's files define (whether it changed or not): who owns what.
    defines: list[tuple[str, str]] = msgspec.field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.deploys

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "delete": 0, "deploy": len(self.deploys)}
        for c in self.changes:
            out[c.action] += 1
        return out


class StoredResource(msgspec.Struct):
    kind: str
    name: str
    sync: str
    config: dict[str, Any]
    hash: str


class SyncOptions(msgspec.Struct):
    """The parts of a resource_sync's config that steer a plan."""

    delete: bool = False
    match_tags: list[str] = msgspec.field(default_factory=list)
    include_resources: bool = True
    include_variables: bool = True
