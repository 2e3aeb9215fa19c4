"""Running a set of stacks through the dependency graph (tiers and ``after``).

A stack starts as soon as everything it waits for has finished healthy: the stacks of a tier run
in parallel (at most ``limit`` working at once: a stack that only waits for its health gate
gives its :class:`Turn` back), a tier starts only when every stack of the tier before is
healthy (the graph's tier barriers), and a failure stops exactly its dependents, each reported
``skipped`` with every stack whose failure stopped it, while independent branches go on.

Stacks outside ``targets`` are taken as deployed (they satisfy what waits for them), unless
``external(name)`` says otherwise: the reconciler passes one that waits while another run deploys
that stack, and answers why it failed. The scheduler does no I/O of its own: it calls
``deploy(name, turn)`` and records what came back.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import anyio

from core.dependency_graph import Graph, describe, is_barrier

log = logging.getLogger(__name__)

DEFAULT_PARALLEL = 16


class Status(enum.Enum):
    HEALTHY = "healthy"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class StackOutcome:
    name: str
    status: Status
    reason: str = ""  # why it failed, or which failure stopped it
    started: float = 0.0  # monotonic seconds; 0 when it never started
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished - self.started if self.started else 0.0


class StackFailed(Exception):
    """Raised by a ``deploy`` callable: the stack did not become healthy (the message says why)."""


class Turn:
    """A stack's turn among the ``limit`` deploys that work at once. A deploy gives it back
    when all it has left is waiting (its health gate), so that the next stack's commands start
    while this one's services come up, as ``docker stack deploy`` of a tier at once does; else
    it is given back when the deploy ends. Releasing twice is a no-op."""

    def __init__(self, limiter: anyio.CapacityLimiter, owner: object) -> None:
        self._limiter = limiter
        self._owner = owner
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._limiter.release_on_behalf_of(self._owner)


Deploy = Callable[[str, Turn], Awaitable[None]]
Notify = Callable[[StackOutcome], Awaitable[None]]
# A stack outside the targets: wait while it is being deployed elsewhere; its failure, or None.
External = Callable[[str], Awaitable[str | None]]


async def _ignore(outcome: StackOutcome) -> None:
    return None


async def run_graph(
    graph: Graph,
    targets: Iterable[str],
    deploy: Deploy,
    *,
    limit: int = DEFAULT_PARALLEL,
    on_finished: Notify = _ignore,
    external: External | None = None,
) -> dict[str, StackOutcome]:
    """Deploy ``targets`` in dependency order; return each target's outcome."""
    wanted = set(targets)
    unknown = wanted - set(graph.nodes)
    if unknown:
        raise ValueError(f"not in the graph: {', '.join(sorted(unknown))}")
    graph.waves()  # raises ValueError naming the cycle, before anything runs

    outcomes: dict[str, StackOutcome] = {}
    # Where a node's chains of failure start: the failed stacks that stop it, if any.
    blocked_by: dict[str, set[str]] = {}
    outside: list[str] = []  # non-targets to ask ``external`` about
    done: set[str] = set()  # nodes resolved (healthy, failed, skipped, or not a target)
    running: set[str] = set()
    limiter = anyio.CapacityLimiter(max(1, limit))
    changed = anyio.Event()
    pending_notices: list[StackOutcome] = []

    def deps(node: str) -> list[str]:
        return graph.waits_for(node)

    def settle() -> list[str]:
        """Resolve what needs no deploy; return the targets that may start now."""
        ready: list[str] = []
        progress = True
        while progress:
            progress = False
            for node in graph.nodes:
                if node in done or node in running:
                    continue
                node_deps = deps(node)
                if not all(d in done for d in node_deps):
                    continue
                causes: set[str] = set()
                for d in node_deps:
                    causes |= blocked_by.get(d, set())
                if node not in wanted and external is not None and not is_barrier(node):
                    if causes:
                        blocked_by[node] = causes
                        done.add(node)
                        progress = True
                    else:
                        outside.append(node)
                        running.add(node)
                elif node not in wanted:
                    # Barriers, and stacks not being deployed: pass a failure through.
                    if causes:
                        blocked_by[node] = causes
                    done.add(node)
                    progress = True
                elif causes:
                    blocked_by[node] = causes
                    outcomes[node] = StackOutcome(
                        node, Status.SKIPPED, f"not deployed: {_failed(causes)}"
                    )
                    done.add(node)
                    progress = True
                    pending_notices.append(outcomes[node])
                else:
                    ready.append(node)
                    running.add(node)
        return sorted(ready)

    async def one(name: str) -> None:
        owner = object()
        await limiter.acquire_on_behalf_of(owner)
        turn = Turn(limiter, owner)
        started = time.monotonic()
        try:
            await deploy(name, turn)
        except StackFailed as exc:
            outcome = StackOutcome(name, Status.FAILED, str(exc), started, time.monotonic())
            blocked_by[name] = {name}
        else:
            outcome = StackOutcome(name, Status.HEALTHY, "", started, time.monotonic())
        finally:
            turn.release()
        outcomes[name] = outcome
        running.discard(name)
        done.add(name)
        log.info("stack %s: %s %s", name, outcome.status.value, outcome.reason)
        await on_finished(outcome)
        changed.set()

    async def elsewhere(name: str) -> None:
        assert external is not None
        cause = await external(name)
        if cause is not None:
            blocked_by[name] = {cause}
        running.discard(name)
        done.add(name)
        changed.set()

    async with anyio.create_task_group() as tg:
        while True:
            changed = anyio.Event()  # set by any stack that finishes from here on
            for name in settle():
                tg.start_soon(one, name)
            while outside:
                tg.start_soon(elsewhere, outside.pop())
            while pending_notices:
                await on_finished(pending_notices.pop(0))
            if not running:
                break
            await changed.wait()
    return {name: outcomes[name] for name in sorted(wanted)}


def _failed(causes: set[str]) -> str:
    names = sorted(causes)
    if len(names) == 1:
        return f"{names[0]} failed" if " " not in names[0] else names[0]
    plain = [n for n in names if " " not in n]
    other = [n for n in names if " " in n]
    parts = ([f"{', '.join(plain)} failed"] if plain else []) + other
    return "; ".join(parts)


def order_for_display(graph: Graph, names: Iterable[str]) -> list[str]:
    """``names`` in wave order, for tables and logs."""
    wanted = set(names)
    return [n for wave in graph.waves() for n in wave if n in wanted and not is_barrier(n)]


__all__ = ["StackFailed", "StackOutcome", "Status", "describe", "order_for_display", "run_graph"]
