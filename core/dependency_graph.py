"""The dependency graph of stacks: ``after`` and ``wait_for`` edges and tiers. Pure; no I/O, no
resource types.

An edge ``a -> b`` means *a waits for b*. Two kinds of ordering edges, as the resource file gives
them: ``after`` is Komodo's (order, and a redeploy of ``b`` redeploys ``a``: Komodo's sync marks a
stack "parent dependency 'b' is deploying", bin/core/src/sync/deploy.rs
``insert_target_using_after_list``); ``wait_for`` is stackward's order-only form (``a`` starts after
``b``, but is not redeployed because ``b`` is). Tiers are modelled with one barrier node per tier
(``tier:NAME``) that waits for every stack of that tier and for the previous barrier; a stack of
tier *k* waits for the barrier of tier *k-1*. This keeps the graph linear in size (a stack does not
get an edge to every stack of every earlier tier), which matters for 10,000 stacks.

Used by the resource checks (cycles), the planner (what depends on a redeployed stack) and, later,
the deploy orchestrator (:meth:`Graph.waves`: what may run in parallel, in order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

TIER_PREFIX = "tier:"


def is_barrier(node: str) -> bool:
    return node.startswith(TIER_PREFIX)


def describe(node: str) -> str:
    """A node for people: stack names as they are, barriers as ``tier NAME``."""
    return f"tier {node[len(TIER_PREFIX) :]}" if is_barrier(node) else node


class Graph:
    """A directed graph ``node -> nodes it waits for``; deterministic in every answer."""

    __slots__ = ("_deps", "_nodes")

    def __init__(self, deps: Mapping[str, Iterable[str]]) -> None:
        self._deps: dict[str, list[str]] = {n: list(d) for n, d in deps.items()}
        nodes = set(self._deps)
        for d in self._deps.values():
            nodes.update(d)
        for n in nodes:
            self._deps.setdefault(n, [])
        self._nodes = sorted(nodes)

    @property
    def nodes(self) -> list[str]:
        return list(self._nodes)

    def waits_for(self, node: str) -> list[str]:
        return list(self._deps.get(node, ()))

    def find_cycle(self) -> list[str] | None:
        """One cycle as ``[a, b, c, a]`` (a waits for b ...), or None. Iterative DFS."""
        white, grey, black = 0, 1, 2
        color = dict.fromkeys(self._nodes, white)
        for root in self._nodes:
            if color[root] != white:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            path: list[str] = [root]
            color[root] = grey
            while stack:
                node, i = stack[-1]
                deps = self._deps[node]
                if i < len(deps):
                    stack[-1] = (node, i + 1)
                    nxt = deps[i]
                    if color[nxt] == grey:
                        cycle = path[path.index(nxt) :]
                        return _rotate(cycle)
                    if color[nxt] == white:
                        color[nxt] = grey
                        stack.append((nxt, 0))
                        path.append(nxt)
                else:
                    color[node] = black
                    stack.pop()
                    path.pop()
        return None

    def waves(self) -> list[list[str]]:
        """Nodes in order: each wave waits only for earlier waves. Raises on a cycle."""
        indeg = {n: len(set(self._deps[n])) for n in self._nodes}
        rdeps: dict[str, list[str]] = {n: [] for n in self._nodes}
        for n in self._nodes:
            for d in set(self._deps[n]):
                rdeps[d].append(n)
        wave = sorted(n for n, k in indeg.items() if k == 0)
        out: list[list[str]] = []
        seen = 0
        while wave:
            out.append(wave)
            seen += len(wave)
            nxt: list[str] = []
            for n in wave:
                for m in rdeps[n]:
                    indeg[m] -= 1
                    if indeg[m] == 0:
                        nxt.append(m)
            wave = sorted(nxt)
        if seen != len(self._nodes):
            cycle = self.find_cycle() or []
            raise ValueError("dependency cycle: " + " -> ".join(describe(n) for n in cycle))
        return out

    def dependents(self, roots: Iterable[str]) -> dict[str, str]:
        """Every node that (transitively) waits for one of ``roots``, mapped to the node it waits
        for directly on the way (the reason)."""
        rdeps: dict[str, list[str]] = {n: [] for n in self._nodes}
        for n in self._nodes:
            for d in self._deps[n]:
                rdeps[d].append(n)
        out: dict[str, str] = {}
        todo = sorted(set(roots))
        while todo:
            n = todo.pop()
            for m in sorted(rdeps.get(n, ())):
                if m not in out:
                    out[m] = n
                    todo.append(m)
        return out


def _rotate(cycle: list[str]) -> list[str]:
    """Start the cycle at its smallest stack name (deterministic), and close it."""
    real = [n for n in cycle if not is_barrier(n)] or cycle
    start = cycle.index(min(real))
    ordered = cycle[start:] + cycle[:start]
    return [*ordered, ordered[0]]


StackEdges = tuple[str, str, Sequence[str]] | tuple[str, str, Sequence[str], Sequence[str]]


def stack_graph(
    stacks: Iterable[StackEdges],
    tiers: Sequence[str],
    *,
    tier_edges: bool = True,
) -> Graph:
    """The graph of ``(name, tier, after[, wait_for])``; a stack with tier ``""`` has no tier
    edges.

    With ``tier_edges=False`` it is the *cascade* graph: only ``after`` edges (the planner uses it
    to decide which redeploys cascade: a later tier, or a ``wait_for``, is ordered after, not
    triggered by, what it waits for).
    """
    deps: dict[str, list[str]] = {}
    members: dict[str, list[str]] = {t: [] for t in tiers}
    rank = {t: i for i, t in enumerate(tiers)}
    for entry in stacks:
        name, tier, after = entry[0], entry[1], entry[2]
        d = list(after)
        if tier_edges and len(entry) > 3:
            d.extend(x for x in entry[3] if x not in d)
        if tier_edges and tier in rank and rank[tier] > 0:
            d.append(TIER_PREFIX + tiers[rank[tier] - 1])
        deps[name] = d
        if tier in members:
            members[tier].append(name)
    if tier_edges:
        for i, t in enumerate(tiers):
            barrier = deps.setdefault(TIER_PREFIX + t, [])
            barrier.extend(members[t])
            if i > 0:
                barrier.append(TIER_PREFIX + tiers[i - 1])
    return Graph(deps)
