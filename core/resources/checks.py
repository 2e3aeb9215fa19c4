"""Checks across entries and files, after loading: references, tiers, cycles, paths, names,
variables.

Whether a missing server, swarm, repo or variable is a warning or an error depends on what else
is known: checking a lone file (``known=None``) the core may know the name, so it is a warning; in
a plan, ``known`` holds what the core knows, and a name neither the files nor the core define is
an error.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from core.dependency_graph import describe, is_barrier, stack_graph
from core.resources.gcpause import gc_paused
from core.resources.models import Resource, ResourceSet, Severity, StackConfig
from core.resources.variables import references

DOCKER_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
DOCKER_NAME_RULE: Final = (
    "a Docker Compose project or Swarm stack name may hold only lowercase letters, digits,"
    " dashes and underscores, and must start with a letter or digit"
)


@dataclass
class Known:
    """Names the core knows besides the files being checked (plan mode)."""

    servers: Collection[str] = field(default_factory=set)
    swarms: Collection[str] = field(default_factory=set)
    repos: Collection[str] = field(default_factory=set)
    variables: Collection[str] = field(default_factory=set)  # variables and core secrets


def check(rs: ResourceSet, known: Known | None = None) -> ResourceSet:
    """Run every cross-entry check on ``rs``, appending findings; returns ``rs``."""
    with gc_paused():
        return _check(rs, known)


def _check(rs: ResourceSet, known: Known | None) -> ResourceSet:
    missing: Severity = "warning" if known is None else "error"
    names: dict[str, set[str]] = {
        k: set() for k in ("server", "swarm", "repo", "stack", "variable")
    }
    for kind, name in rs.resources:
        if kind in names:
            names[kind].add(name)
    if known is not None:
        names["server"] |= set(known.servers)
        names["swarm"] |= set(known.swarms)
        names["repo"] |= set(known.repos)
        names["variable"] |= set(known.variables)
    tiers = set(rs.tiers)
    for res in rs.resources.values():
        if res.kind == "stack":
            _check_stack(rs, res, names, tiers, missing)
        elif res.kind == "swarm":
            for i, server in enumerate(res.config.servers):
                if server not in names["server"]:
                    rs.finding(
                        missing,
                        res.source,
                        ("config", "servers", i),
                        _missing("swarm", res.name, "server", server),
                        "reference",
                    )
        elif res.kind == "repo":
            cfg = res.config
            if cfg.server and cfg.server not in names["server"]:
                rs.finding(
                    missing,
                    res.source,
                    ("config", "server"),
                    _missing("repo", res.name, "server", cfg.server),
                    "reference",
                )
            _check_variables(
                rs,
                res,
                names["variable"],
                missing,
                [
                    ("environment", cfg.environment),
                    *(("on_clone", c.command) for c in cfg.on_clone),
                    *(("on_pull", c.command) for c in cfg.on_pull),
                ],
            )
        elif res.kind == "resource_sync":
            cfg = res.config
            if cfg.linked_repo and cfg.linked_repo not in names["repo"]:
                rs.finding(
                    missing,
                    res.source,
                    ("config", "linked_repo"),
                    _missing("resource_sync", res.name, "repo", cfg.linked_repo),
                    "reference",
                )
    _check_cycles(rs)
    return rs


def _missing(kind: str, name: str, ref_kind: str, ref: str) -> str:
    return (
        f'{kind} "{name}": {ref_kind} "{ref}" is not defined here; add a [[{ref_kind}]] named'
        f' "{ref}" or fix the name'
    )


def _check_stack(
    rs: ResourceSet,
    res: Resource,
    names: dict[str, set[str]],
    tiers: set[str],
    missing: Severity,
) -> None:
    cfg: StackConfig = res.config
    src = res.source
    project = cfg.project_name or res.name
    if not DOCKER_NAME.match(project):
        where = ("config", "project_name") if cfg.project_name else ("name",)
        rs.finding(
            "error",
            src,
            where,
            f'stack "{res.name}": "{project}" cannot be used: {DOCKER_NAME_RULE}'
            + ("" if cfg.project_name else "; rename it or set project_name"),
            "name",
        )
    server = cfg.server.strip()
    if not server and not cfg.swarm.strip():
        rs.finding(
            missing,
            src,
            ("config",),
            f'stack "{res.name}": neither server nor swarm is set; set server = "..." for'
            ' a Compose project or swarm = "..." for a Swarm stack',
            "target",
        )
    if server and server not in names["server"]:
        rs.finding(
            missing,
            src,
            ("config", "server"),
            _missing("stack", res.name, "server", server),
            "reference",
        )
    if cfg.swarm and cfg.swarm not in names["swarm"]:
        rs.finding(
            missing,
            src,
            ("config", "swarm"),
            _missing("stack", res.name, "swarm", cfg.swarm),
            "reference",
        )
    if cfg.linked_repo and cfg.linked_repo not in names["repo"]:
        rs.finding(
            missing,
            src,
            ("config", "linked_repo"),
            _missing("stack", res.name, "repo", cfg.linked_repo),
            "reference",
        )
    for key, deps in (("after", res.after), ("wait_for", res.wait_for)):
        for i, dep in enumerate(deps):
            if dep not in names["stack"]:
                rs.finding(
                    "error",
                    src,
                    (key, i),
                    f'stack "{res.name}": {key} names "{dep}", which is no stack; fix the name'
                    " or remove it",
                    "after",
                )
            elif dep == res.name:
                rs.finding(
                    "error",
                    src,
                    (key, i),
                    f'stack "{res.name}": {key} names the stack itself',
                    "cycle",
                )
    if res.tier:
        if not rs.tiers:
            rs.finding(
                "error",
                src,
                ("tier",),
                f'stack "{res.name}": tier "{res.tier}" but no tiers are defined; add'
                ' tiers = ["...", ...] at the top of the file',
                "tier",
            )
        elif res.tier not in tiers:
            rs.finding(
                "error",
                src,
                ("tier",),
                f'stack "{res.name}": tier "{res.tier}" is not one of the tiers'
                f" ({', '.join(rs.tiers)})",
                "tier",
            )
    _check_paths(rs, res, cfg)
    _check_variables(
        rs,
        res,
        names["variable"],
        missing,
        [
            ("environment", cfg.environment),
            *(("pre_deploy", c.command) for c in cfg.pre_deploy),
            *(("post_deploy", c.command) for c in cfg.post_deploy),
            *(("extra_args", a) for a in cfg.extra_args),
            ("file_contents", cfg.file_contents),
        ],
    )


def _escapes(path: str) -> bool:
    norm = posixpath.normpath(path)
    return norm == ".." or norm.startswith("../")


def _check_paths(rs: ResourceSet, res: Resource, cfg: StackConfig) -> None:
    if cfg.files_on_host:
        return  # files live on the host: any path there is the user's choice
    src = res.source
    run_dir = cfg.run_directory or "."

    def bad(where: tuple[str | int, ...], what: str, value: str, why: str) -> None:
        rs.finding(
            "error",
            src,
            ("config", *where),
            f'stack "{res.name}": {what} "{value}" {why}; paths must stay inside the'
            " repository (or set files_on_host = true for files on the host)",
            "path",
        )

    if posixpath.isabs(run_dir):
        bad(("run_directory",), "run_directory", run_dir, "is absolute")
        return
    if _escapes(run_dir):
        bad(("run_directory",), "run_directory", run_dir, "leaves the repository")
        return
    rel: list[tuple[tuple[str | int, ...], str, str]] = [
        (("file_paths", i), "file_paths", p) for i, p in enumerate(cfg.file_paths)
    ]
    # An untracked env file (track = false) is a file on the host, so it may be absolute.
    rel += [
        (("additional_env_files", i), "additional_env_files", f.path)
        for i, f in enumerate(cfg.additional_env_files)
        if f.track or not posixpath.isabs(f.path)
    ]
    rel += [(("config_files", i), "config_files", f.path) for i, f in enumerate(cfg.config_files)]
    for where, what, p in rel:
        if ".." not in p and not p.startswith("/"):
            continue  # relative and never going up: cannot leave the repository
        if posixpath.isabs(p):
            bad(where, what, p, "is absolute")
        elif _escapes(posixpath.join(run_dir, p)):
            bad(where, what, p, f'leaves the repository (from run_directory "{run_dir}")')
    for i, cmd in enumerate(cfg.pre_deploy):
        if cmd.path and not posixpath.isabs(cmd.path) and _escapes(cmd.path):
            bad(
                ("pre_deploy", i, "path") if len(cfg.pre_deploy) > 1 else ("pre_deploy", "path"),
                "pre_deploy.path",
                cmd.path,
                "leaves the repository",
            )


def _check_variables(
    rs: ResourceSet,
    res: Resource,
    known: set[str],
    missing: Severity,
    texts: list[tuple[str, str]],
) -> None:
    for key, text in texts:
        for name in references(text):
            if name not in known:
                rs.finding(
                    missing,
                    res.source,
                    ("config", key),
                    f'{res.kind} "{res.name}": {key} uses [[{name}]], which is neither a'
                    " [[variable]] here nor a secret known to the core; define it or fix"
                    " the name",
                    "variable",
                )


def _check_cycles(rs: ResourceSet) -> None:
    stacks = rs.stacks()
    if not any(s.after or s.wait_for for s in stacks):
        return  # tiers alone are a strict order: a cycle needs an after (or wait_for) edge
    known = {s.name for s in stacks}
    tiers = set(rs.tiers)
    triples = [
        (
            s.name,
            s.tier if s.tier in tiers else "",
            [a for a in s.after if a in known],
            [a for a in s.wait_for if a in known],
        )
        for s in stacks
    ]
    graph = stack_graph(triples, rs.tiers)
    reported: set[frozenset[str]] = set()
    by_name = {s.name: s for s in stacks}
    for _ in range(10):  # report a few distinct cycles, not one per edge
        cycle = graph.find_cycle()
        if cycle is None:
            return
        key = frozenset(cycle)
        if key in reported:
            return
        reported.add(key)
        # Locate the finding at the first "after" entry that closes the cycle, else a tier.
        first = next(n for n in cycle if not is_barrier(n))
        where: tuple[str | int, ...] = ("tier",)
        for a, b in zip(cycle, cycle[1:], strict=False):
            if not is_barrier(a) and b in by_name[a].after:
                first, where = a, ("after", by_name[a].after.index(b))
                break
            if not is_barrier(a) and b in by_name[a].wait_for:
                first, where = a, ("wait_for", by_name[a].wait_for.index(b))
                break
        res = by_name[first]
        rs.finding(
            "error",
            res.source,
            where,
            "dependency cycle: "
            + " -> ".join(describe(n) for n in cycle)
            + "; remove one of these after entries or move a stack to another tier",
            "cycle",
        )
        # Break the reported cycle's first edge and look for another.
        deps = {n: graph.waits_for(n) for n in graph.nodes}
        nxt = cycle[cycle.index(first) + 1]
        deps[first] = [d for d in deps[first] if d != nxt]
        graph = type(graph)(deps)


def iter_strings(value: Any) -> Iterator[str]:
    """Every string inside a nested value (used to scan configs generically)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from iter_strings(v)
