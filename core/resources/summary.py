"""Per file: which stacks deploy as Komodo would, and which differ and why. Pure.

A stack differs when a field of :mod:`.support` with ``deploy=True`` applies to it, to its server
or swarm's servers, or to its linked ``[[repo]]``; or when it has an error of its own. (A stack
with ``deploy = false`` that a ``[[procedure]]`` deploys deploys as with Komodo: procedures run.)
"""

from __future__ import annotations

import msgspec

from core.resources import support
from core.resources.models import Resource, ResourceSet, StackConfig, SwarmConfig


class StackDifference(msgspec.Struct, frozen=True):
    stack: str
    reasons: tuple[str, ...]  # support keys without the kind ("post_deploy"), or "error"


class FileSummary(msgspec.Struct, frozen=True):
    file: str
    same: tuple[str, ...]
    differ: tuple[StackDifference, ...]

    def format(self) -> str:
        """``FILE: N stacks deploy as Komodo would, M differ: NAME (why, ...), ...``."""
        if not self.same and not self.differ:
            return f"{self.file}: no stacks"
        n, m = len(self.same), len(self.differ)
        line = (
            f"{self.file}: {n} stack{'' if n == 1 else 's'} deploy{'s' if n == 1 else ''} as"
            f" Komodo would, {m} differ{'s' if m == 1 else ''}"
        )
        if self.differ:
            line += ": " + ", ".join(f"{d.stack} ({', '.join(d.reasons)})" for d in self.differ)
        return line


def _deploying(keys: list[str]) -> list[str]:
    return [k for k in keys if (e := support.BY_KEY.get(k)) is not None and e.deploy]


def reasons_of(rs: ResourceSet, stack: Resource) -> list[str]:
    """Why ``stack`` deploys otherwise than with Komodo (empty: it does not)."""
    cfg = stack.typed_config(StackConfig)
    reasons = [k.split(".", 1)[-1] for k in _deploying(rs.inert.get(stack.key, []))]
    servers = [cfg.server] if cfg.server and not cfg.swarm else []
    swarm = rs.config("swarm", cfg.swarm, SwarmConfig) if cfg.swarm else None
    if swarm is not None:
        servers = list(swarm.servers)
    for server in servers:
        reasons += _deploying(rs.inert.get(("server", server), []))
    if cfg.linked_repo:
        reasons += _deploying(rs.inert.get(("repo", cfg.linked_repo), []))
    if stack.key in rs.faulty:
        reasons.append("error")
    return list(dict.fromkeys(reasons))


def summarise(rs: ResourceSet) -> list[FileSummary]:
    """One summary per file checked, in the order the files were read."""
    by_file: dict[str, tuple[list[str], list[StackDifference]]] = {f: ([], []) for f in rs.files}
    for stack in rs.stacks():
        same, differ = by_file.setdefault(stack.source.file, ([], []))
        reasons = reasons_of(rs, stack)
        if reasons:
            differ.append(StackDifference(stack.name, tuple(reasons)))
        else:
            same.append(stack.name)
    return [FileSummary(f, tuple(s), tuple(d)) for f, (s, d) in by_file.items()]
