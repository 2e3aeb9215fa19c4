"""Is a stack converged, and if not, why. Pure: the store and git feed it, nothing here waits.

Per stack the core keeps three things: the **desired** state (the applied resource, its commit, the
values it refers to: ``Desired``), the **recorded** one (its deploys: the last one and its result,
the last healthy one's spec and commit: ``Record``), and what the **engine** reports (``Record``'s
``engine``, from the health gate and drift). A stack is converged when its last deploy was healthy,
at the desired spec, at a commit whose difference from the desired one does not touch its files,
and the engine agrees.

Verdict kinds, in the order they are reported:
``never`` (never deployed), ``deploying`` (a deploy runs or waits), ``failed`` / ``skipped`` /
``interrupted`` (the last deploy's result), ``changed`` (the config it depends on), ``files`` (its
files at the new commit), ``drifted`` (the engine disagrees).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import msgspec

from core.reconcile.spec import matching

RETRY_FIRST = 30.0  # seconds before a failed stack is retried by the reconciler
RETRY_MAX = 3600.0

KINDS = ("never", "deploying", "failed", "skipped", "interrupted", "changed", "files", "drifted")
OPEN = ("pending", "running")
UNHEALTHY = ("unhealthy", "missing")
ANY_SPEC = "*"  # a healthy deploy recorded before specs were kept: taken as the current one


class Record(msgspec.Struct, frozen=True):
    """A stack's deploys and engine state, as far as convergence cares."""

    status: str = ""  # the last deploy's: pending running healthy failed skipped interrupted
    reason: str = ""
    finished_at: float = 0.0
    run: int = 0
    run_spec: str = ""  # a deploy in flight: its spec and commit ("" while it waits to start,
    run_commit: str = ""  # and then reads the newest desired state)
    ok_spec: str = ""  # the last healthy deploy's spec ...
    ok_form: dict[str, Any] | None = None  # ... and the stack form it was made from
    ok_commit: str = ""
    engine: str = "unknown"  # healthy unhealthy missing unknown
    engine_detail: str = ""
    failures: int = 0  # failed deploys in a row
    retry_at: float = 0.0  # not retried by the reconciler before this time


class Desired(msgspec.Struct, frozen=True):
    name: str
    spec: str
    form: dict[str, Any]
    commit: str = ""  # "" when not known yet (the head is resolved when it deploys)
    tracked: tuple[str, ...] = ()  # the files whose change at a new commit redeploys it
    run_directory: str = ""


class Verdict(msgspec.Struct, frozen=True):
    stack: str
    converged: bool
    kinds: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    retry_at: float = 0.0

    def has(self, *kinds: str) -> bool:
        return any(k in self.kinds for k in kinds)

    @property
    def needs_deploy(self) -> bool:
        """Not converged, and not only waiting for a deploy that brings what is desired."""
        return not self.converged and self.kinds != ("deploying",)


# (old commit, new commit) -> the paths that differ, or None when it cannot be told
ChangedFiles = Callable[[str, str], Collection[str] | None]


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 200 else line[:197] + "..."


def diff_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths that differ between two plain forms (tables recursed, lists whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else key
            if key not in old or key not in new:
                out.append(path)
            elif old[key] != new[key]:
                out.extend(diff_paths(old[key], new[key], path))
        return out
    return [] if old == new else [prefix]


def judge(desired: Desired, record: Record, changed_files: ChangedFiles | None = None) -> Verdict:
    kinds: list[str] = []
    reasons: list[str] = []

    def add(kind: str, reason: str) -> None:
        kinds.append(kind)
        reasons.append(reason)

    if record.status in OPEN:
        add("deploying", f"being deployed (run {record.run})")
        stale = record.run_spec and (
            record.run_spec != desired.spec
            or (desired.commit and record.run_commit and desired.commit != record.run_commit)
        )
        if not stale:  # it deploys what is desired: nothing more to do
            return Verdict(desired.name, False, tuple(kinds), tuple(reasons), record.retry_at)
        add("changed", "changed since this deploy started: a follow-up deploy is needed")
        return Verdict(desired.name, False, tuple(kinds), tuple(reasons), record.retry_at)
    elif record.status == "failed":
        add("failed", "last deploy failed: " + _first_line(record.reason))
    elif record.status == "skipped":
        add("skipped", "last deploy skipped: " + _first_line(record.reason))
    elif record.status == "interrupted":
        add("interrupted", "last deploy interrupted: " + _first_line(record.reason))
    if not record.ok_spec:
        if not kinds:
            add("never", "never deployed")
        elif record.status not in OPEN:
            kinds.insert(0, "never")
            reasons.insert(0, "never deployed healthy")
        return Verdict(desired.name, False, tuple(kinds), tuple(reasons), record.retry_at)
    if record.ok_spec != ANY_SPEC and desired.spec != record.ok_spec:
        fields = diff_paths(record.ok_form, desired.form) if record.ok_form is not None else []
        add("changed", "changed: " + (", ".join(fields[:8]) if fields else "its settings"))
    if desired.commit and record.ok_commit and desired.commit != record.ok_commit:
        paths = changed_files(record.ok_commit, desired.commit) if changed_files else None
        if paths is None:
            add(
                "files",
                f"commit {desired.commit[:12]} (files since {record.ok_commit[:12]} unknown)",
            )
        else:
            hits = matching(desired.tracked, desired.run_directory, paths)
            if hits:
                add("files", "files changed: " + ", ".join(hits[:8]))
    if record.status == "healthy" and record.engine in UNHEALTHY:
        add("drifted", "drifted: " + (_first_line(record.engine_detail) or record.engine))
    return Verdict(desired.name, not kinds, tuple(kinds), tuple(reasons), record.retry_at)


def retry_delay(failures: int) -> float:
    """How long the reconciler waits before retrying a stack that failed ``failures`` times in
    a row: 30 s, 1 min, 2 min, ... at most an hour."""
    if failures <= 0:
        return 0.0
    return float(min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1)))


def due(verdict: Verdict, now: float) -> bool:
    """Whether the reconciler should deploy the stack now, by itself (policy ``auto``).

    Everything not converged is due, except: a deploy already on its way; a failed stack still
    in its backoff (its desired state unchanged); and drift, which is the stack's ``on_drift``
    business (core/drift.py)."""
    if verdict.converged or verdict.kinds == ("deploying",):
        return False
    if set(verdict.kinds) <= {"drifted"}:
        return False
    if verdict.has("failed") and not verdict.has("changed", "files") and verdict.retry_at > now:
        return False
    return True


def summarize(verdicts: Mapping[str, Verdict]) -> dict[str, int]:
    out = dict.fromkeys(("converged", *KINDS), 0)
    for v in verdicts.values():
        if v.converged:
            out["converged"] += 1
        for k in v.kinds:
            out[k] += 1
    return out
