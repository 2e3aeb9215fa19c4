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

from core.automation import executions
from core.automation.patterns import PatternError, compile_pattern
from core.automation.patterns import matching as select
from core.automation.schedule import ScheduleError
from core.automation.schedule import parse as parse_schedule
from core.dependency_graph import describe, is_barrier, stack_graph
from core.resources.gcpause import gc_paused
from core.resources.models import (
    Finding,
    ProcedureConfig,
    RepoConfig,
    Resource,
    ResourceSet,
    ResourceSyncConfig,
    Severity,
    StackConfig,
    SwarmConfig,
)
from core.resources.suggest import closest, did_you_mean
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
    uses = _Uses()
    refs = _Refs(names, missing)
    for res in rs.resources.values():
        if res.kind == "stack":
            _check_stack(rs, res, names, tiers, missing, uses, refs)
        elif res.kind == "swarm":
            for i, server in enumerate(res.typed_config(SwarmConfig).servers):
                refs.check(rs, res, ("config", "servers", i), "server", server)
        elif res.kind == "repo":
            rcfg = res.typed_config(RepoConfig)
            refs.check(rs, res, ("config", "server"), "server", rcfg.server)
            uses.collect(
                rs,
                res,
                [
                    ("environment", rcfg.environment),
                    *(("on_clone", c.command) for c in rcfg.on_clone),
                    *(("on_pull", c.command) for c in rcfg.on_pull),
                ],
            )
        elif res.kind == "resource_sync":
            linked = res.typed_config(ResourceSyncConfig).linked_repo
            refs.check(rs, res, ("config", "linked_repo"), "repo", linked)
        elif res.kind == "procedure":
            _check_procedure(rs, res)
    refs.report(rs)
    uses.report(rs, names["variable"], missing, known is not None)
    _check_cycles(rs)
    return rs


class _Refs:
    """References to servers, swarms and repos not defined here: a near miss of a defined name
    at once, with "did you mean"; the others once per file and name, at the first use, with the
    lines of the others (a file of 28 stacks on one server the core knows gives one line)."""

    def __init__(self, names: dict[str, set[str]], missing: Severity) -> None:
        self.names = names
        self.missing = missing
        self.unknown: dict[tuple[str, str, str], list[tuple[int, str]]] = {}

    def check(
        self,
        rs: ResourceSet,
        res: Resource,
        where: tuple[str | int, ...],
        ref_kind: str,
        ref: str,
    ) -> None:
        ref = ref.strip()
        if not ref or ref in self.names[ref_kind]:
            return
        who = f'{res.kind} "{res.name}"'
        hint = did_you_mean(ref, self.names[ref_kind])
        if hint:
            rs.finding(
                self.missing,
                res.source,
                where,
                f'{who}: {ref_kind} "{ref}" is not defined here{hint}; fix the name',
                "reference",
            )
            return
        line = rs.line(res.source, *where)
        self.unknown.setdefault((res.source.file, ref_kind, ref), []).append((line, who))
        if self.missing == "error":
            rs.faulty.add(res.key)

    def report(self, rs: ResourceSet) -> None:
        for (file, ref_kind, ref), uses in self.unknown.items():
            uses.sort()
            line, who = uses[0]
            others = ""
            if len(uses) > 1:
                others = (
                    f" (and {len(uses) - 1} more: line{'s' if len(uses) > 2 else ''}"
                    f" {', '.join(str(n) for n, _ in uses[1:])})"
                )
            rs.findings.append(
                Finding(
                    file,
                    line,
                    self.missing,
                    f'{who}{others}: {ref_kind} "{ref}" is not defined here; add a'
                    f' [[{ref_kind}]] named "{ref}" or fix the name',
                    "reference",
                )
            )


def _check_stack(
    rs: ResourceSet,
    res: Resource,
    names: dict[str, set[str]],
    tiers: set[str],
    missing: Severity,
    uses: _Uses,
    refs: _Refs,
) -> None:
    cfg = res.typed_config(StackConfig)
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
    if not cfg.swarm.strip():  # Komodo: swarm overrides server
        refs.check(rs, res, ("config", "server"), "server", server)
    refs.check(rs, res, ("config", "swarm"), "swarm", cfg.swarm)
    refs.check(rs, res, ("config", "linked_repo"), "repo", cfg.linked_repo)
    for key, deps in (("after", res.after), ("wait_for", res.wait_for)):
        for i, dep in enumerate(deps):
            if dep not in names["stack"]:
                hint = did_you_mean(dep, names["stack"])
                rs.finding(
                    "error",
                    src,
                    (key, i),
                    f'stack "{res.name}": {key} names "{dep}", which is no stack{hint}; fix'
                    " the name or remove it",
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
    if cfg.skip_secret_interp:
        return  # Komodo interpolates nothing into this stack
    uses.collect(
        rs,
        res,
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
    # Komodo runs pre_deploy in run_directory joined with its path (an absolute path as is).
    for cmd in cfg.pre_deploy:
        if cmd.path and not posixpath.isabs(cmd.path):
            if _escapes(posixpath.join(run_dir, cmd.path)):
                why = f'leaves the repository (from run_directory "{run_dir}")'
                bad(("pre_deploy", "path"), "pre_deploy.path", cmd.path, why)


class _Use:
    __slots__ = ("res", "field", "text", "name")

    def __init__(self, res: Resource, field: str, text: str, name: str) -> None:
        self.res, self.field, self.text, self.name = res, field, text, name

    def line(self, rs: ResourceSet) -> int:
        """The line that uses the name (found only for what is reported: the line map is built
        on first use)."""
        lm = rs.linemaps.get(self.res.source.file)
        path = (*self.res.source.path, "config", self.field)
        if lm is None:
            return 1
        exact = re.compile(r"\[\[\s*" + re.escape(self.name) + r"\s*\]\]")
        return lm.find(path, exact, self.text.count("\n") + 2)


class _Uses:
    """Every ``[[NAME]]`` used, reported once checked at the line that uses it: a near miss
    of a known name on its own line with "did you mean"; the others summarised once per file
    (they are most often secrets the core holds in core.toml's ``[secrets]``)."""

    def __init__(self) -> None:
        self.uses: list[_Use] = []

    def collect(self, rs: ResourceSet, res: Resource, texts: list[tuple[str, str]]) -> None:
        for key, text in texts:
            for name in references(text):
                self.uses.append(_Use(res, key, text, name))

    def report(self, rs: ResourceSet, known: set[str], missing: Severity, plan: bool) -> None:
        unknown: dict[str, dict[str, list[int]]] = {}  # file -> name -> lines
        for use in self.uses:
            if use.name in known:
                continue
            file = use.res.source.file
            near = closest(use.name, known)
            if near is not None:
                rs.findings.append(
                    Finding(
                        file,
                        use.line(rs),
                        missing,
                        f'{use.res.kind} "{use.res.name}": {use.field} uses [[{use.name}]],'
                        f' which is not defined (did you mean "{near}"?); fix the name',
                        "variable",
                    )
                )
                continue
            unknown.setdefault(file, {}).setdefault(use.name, []).append(use.line(rs))
        for file, by_name in unknown.items():
            first = min(min(lines) for lines in by_name.values())
            listed = ", ".join(
                f"[[{name}]] (line{'s' if len(set(lines)) > 1 else ''}"
                f" {', '.join(str(n) for n in sorted(set(lines)))})"
                for name, lines in sorted(by_name.items(), key=lambda kv: min(kv[1]))
            )
            where = (
                "neither a [[variable]] nor a secret the core holds"
                if plan
                else "not defined in the files checked"
            )
            rs.findings.append(
                Finding(
                    file,
                    first,
                    missing,
                    f"{len(by_name)} variable{'s' if len(by_name) > 1 else ''} used here"
                    f" {'are' if len(by_name) > 1 else 'is'} {where}: {listed}; put secrets in"
                    " core.toml's [secrets] (the core interpolates them at deploy) and the rest"
                    " in [[variable]] entries",
                    "variable",
                )
            )


_REF_PARAMS: Final = {
    "stack": "stack",
    "repo": "repo",
    "sync": "resource_sync",
    "procedure": "procedure",
}


def _check_procedure(rs: ResourceSet, res: Resource) -> None:
    """A [[procedure]] runs (core.automation): each execution is read as Komodo's type (an
    unknown type or params that do not fit are errors at its line; builds, actions and what
    stackward has no resource for are warnings naming them), batch patterns must compile, the
    names it acts on should be defined, and its schedule must read (errors at its line; a note,
    such as a cron read without schedule_format, is a warning)."""
    cfg = res.typed_config(ProcedureConfig)
    who = f'procedure "{res.name}"'
    src = res.source
    stage_key = "stage" if rs.line(src, "config", "stage") != rs.line(src) else "stages"
    defined = {k: {r.name for r in rs.of_kind(k)} for k in set(_REF_PARAMS.values())}
    for i, stage in enumerate(cfg.stages):
        for j, item in enumerate(stage.executions):
            where = ("config", stage_key, i, "executions", j)
            try:
                step = executions.parse(item.execution)
            except executions.ExecutionError as exc:
                rs.finding("error", src, where, f"{who}: {exc}")
                continue
            if isinstance(step, executions.ReadPast):
                rs.finding(
                    "warning",
                    src,
                    where,
                    f"{who}: {step.type} is read past: {step.why}",
                    "inert",
                )
                continue
            pattern = getattr(step, "pattern", None)
            if isinstance(pattern, str):
                try:
                    compile_pattern(pattern)
                except PatternError as exc:
                    rs.finding("error", src, where, f"{who}: {step.describe()}: {exc}")
                continue
            for param, kind in _REF_PARAMS.items():
                ref = getattr(step, param, None)
                if not isinstance(ref, str) or not ref or ref in defined[kind]:
                    continue
                hint = did_you_mean(ref, defined[kind])
                rs.finding(
                    "warning",
                    src,
                    where,
                    f'{who}: {step.describe()}: {kind} "{ref}" is not defined here'
                    + (f"{hint}; fix the name" if hint else " (the core may know it)"),
                    "reference",
                )
            if isinstance(step, executions.RunProcedure) and step.procedure == res.name:
                rs.finding(
                    "warning",
                    src,
                    where,
                    f"{who}: RunProcedure of itself fails when it runs (Komodo: Self referential"
                    " procedure detected)",
                )
    if not cfg.schedule.strip():
        return
    if cfg.schedule_format and cfg.schedule_format not in ("Cron", "English"):
        rs.finding(
            "error",
            src,
            ("config", "schedule_format"),
            f'{who}: schedule_format "{cfg.schedule_format}" is neither "Cron" nor "English"',
        )
        return
    try:
        schedule = parse_schedule(
            cfg.schedule,
            cfg.schedule_format or "English",
            cfg.schedule_timezone or "UTC",
            format_written=bool(cfg.schedule_format),
        )
    except ScheduleError as exc:
        key = "schedule_timezone" if "time zone" in str(exc) else "schedule"
        rs.finding("error", src, ("config", key), f"{who}: schedule: {exc}")
        return
    if schedule.note:
        rs.finding("warning", src, ("config", "schedule"), f"{who}: {schedule.note}", "schedule")


def matching(pattern: str, names: list[str]) -> list[str]:
    """The names a Komodo batch ``pattern`` selects (core.automation.patterns); an invalid
    pattern selects nothing."""
    try:
        return select(pattern, names)
    except PatternError:
        return []


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
