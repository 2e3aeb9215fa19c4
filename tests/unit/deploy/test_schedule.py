"""The scheduler over the graph, with a stand-in deploy (pure logic, no sockets)."""

from __future__ import annotations

import time

import anyio
import pytest

from core.dependency_graph import stack_graph
from core.deploy.schedule import StackFailed, Status, Turn, run_graph

pytestmark = pytest.mark.anyio

TIERS = ["infrastructure", "platform", "application"]
STACKS = [
    ("caddy", "infrastructure", []),
    ("secrets", "infrastructure", []),
    ("postgres", "platform", []),
    ("authentik", "platform", ["postgres"]),
    ("monitoring", "platform", []),
    ("media", "application", []),
    ("support", "application", ["media"]),
]


class Recorder:
    def __init__(
        self,
        fail: set[str] = frozenset(),  # type: ignore[assignment]
        delay: float = 0.02,
        gate: float = 0.0,
    ) -> None:
        self.fail = fail
        self.delay = delay  # working (the commands)
        self.gate = gate  # then only waiting (the health gate), its turn given back
        self.events: list[tuple[str, str]] = []
        self.running = 0
        self.max_running = 0
        self.working = 0
        self.max_working = 0

    async def __call__(self, name: str, turn: Turn) -> None:
        self.events.append(("start", name))
        self.running += 1
        self.working += 1
        self.max_running = max(self.max_running, self.running)
        self.max_working = max(self.max_working, self.working)
        try:
            await anyio.sleep(self.delay)
            if self.gate:
                self.working -= 1
                turn.release()
                turn.release()  # twice is a no-op
                await anyio.sleep(self.gate)
                self.working += 1
            if name in self.fail:
                raise StackFailed(f"{name} is unhealthy")
        finally:
            self.running -= 1
            self.working -= 1
            self.events.append(("end", name))

    def index(self, kind: str, name: str) -> int:
        return self.events.index((kind, name))


async def test_tiers_run_in_order_and_a_tier_in_parallel() -> None:
    graph = stack_graph(STACKS, TIERS)
    deploy = Recorder()
    outcomes = await run_graph(graph, [s[0] for s in STACKS], deploy)
    assert {o.status for o in outcomes.values()} == {Status.HEALTHY}
    for early in ("caddy", "secrets"):
        for late in ("postgres", "authentik", "monitoring", "media", "support"):
            assert deploy.index("end", early) < deploy.index("start", late)
    assert deploy.index("end", "postgres") < deploy.index("start", "authentik")
    assert deploy.index("end", "media") < deploy.index("start", "support")
    assert deploy.max_running >= 2  # the two infrastructure stacks overlap


async def test_a_failure_skips_its_dependents_and_independent_branches_go_on() -> None:
    graph = stack_graph(STACKS, TIERS)
    outcomes = await run_graph(graph, [s[0] for s in STACKS], Recorder(fail={"postgres"}))
    assert outcomes["postgres"].status is Status.FAILED
    assert outcomes["postgres"].reason == "postgres is unhealthy"
    assert outcomes["authentik"].status is Status.SKIPPED
    assert outcomes["authentik"].reason == "not deployed: postgres failed"
    assert outcomes["monitoring"].status is Status.HEALTHY  # same tier, independent
    # A later tier starts only when the one before is healthy.
    assert outcomes["media"].status is Status.SKIPPED
    assert outcomes["support"].reason == "not deployed: postgres failed"


async def test_only_targets_deploy_and_others_count_as_done() -> None:
    graph = stack_graph(STACKS, TIERS)
    deploy = Recorder()
    outcomes = await run_graph(graph, ["support"], deploy)
    assert list(outcomes) == ["support"] and outcomes["support"].status is Status.HEALTHY
    assert deploy.events == [("start", "support"), ("end", "support")]


async def test_the_parallel_bound_holds() -> None:
    stacks = [(f"s{i}", "", []) for i in range(20)]
    graph = stack_graph(stacks, [])
    deploy = Recorder(delay=0.05)
    await run_graph(graph, [s[0] for s in stacks], deploy, limit=3)
    assert deploy.max_running == 3


async def test_the_bound_is_on_work_and_a_stack_waiting_for_health_gives_its_turn_back() -> None:
    """As the docker-CLI floor deploys a tier (16 ``docker stack deploy`` at once, then one wait
    for health), the limit bounds the stacks whose commands run, not those that only wait."""
    stacks = [(f"s{i}", "", []) for i in range(12)]
    graph = stack_graph(stacks, [])
    deploy = Recorder(delay=0.02, gate=0.3)
    started = time.monotonic()
    await run_graph(graph, [s[0] for s in stacks], deploy, limit=3)
    took = time.monotonic() - started
    assert deploy.max_working <= 3
    assert deploy.max_running == 12  # every gate waits at once
    assert took < 0.3 + 4 * 0.02 + 0.25, took  # not 4 rounds of 0.32 s


async def test_a_cycle_is_refused_before_anything_runs() -> None:
    graph = stack_graph([("a", "", ["b"]), ("b", "", ["a"])], [])
    deploy = Recorder()
    with pytest.raises(ValueError, match="cycle"):
        await run_graph(graph, ["a", "b"], deploy)
    assert deploy.events == []


async def test_outcomes_are_reported_as_they_happen() -> None:
    graph = stack_graph(STACKS, TIERS)
    seen: list[tuple[str, Status]] = []

    async def note(outcome):  # type: ignore[no-untyped-def]
        seen.append((outcome.name, outcome.status))

    await run_graph(graph, [s[0] for s in STACKS], Recorder(fail={"caddy"}), on_finished=note)
    assert seen[0][0] in {"caddy", "secrets"}
    assert ("caddy", Status.FAILED) in seen
    assert {n for n, s in seen if s is Status.SKIPPED} == {
        "postgres",
        "authentik",
        "monitoring",
        "media",
        "support",
    }


async def test_a_skip_names_every_failed_stack_it_waited_for() -> None:
    stacks = [("db", "", []), ("cache", "", []), ("app", "", ["db", "cache"])]
    outcomes = await run_graph(
        stack_graph(stacks, []), ["db", "cache", "app"], Recorder(fail={"db", "cache"})
    )
    assert outcomes["app"].status is Status.SKIPPED
    assert outcomes["app"].reason == "not deployed: cache, db failed"


async def test_a_stack_deployed_by_another_run_is_waited_for_and_its_failure_skips() -> None:
    """``external``: a dependency outside the targets that another run deploys right now."""
    stacks = [("db", "", []), ("app", "", ["db"]), ("web", "", [])]
    done = anyio.Event()
    asked: list[str] = []

    async def elsewhere(name: str) -> str | None:
        asked.append(name)
        if name == "db":
            await done.wait()
            return "db failed (run 7)"
        return None

    async with anyio.create_task_group() as tg:
        result: dict[str, object] = {}

        async def go() -> None:
            result.update(
                await run_graph(
                    stack_graph(stacks, []), ["app", "web"], Recorder(), external=elsewhere
                )
            )

        tg.start_soon(go)
        await anyio.sleep(0.1)
        assert not result  # app waits for db's run; web goes on
        done.set()
    outcomes = result
    assert outcomes["web"].status is Status.HEALTHY  # type: ignore[attr-defined]
    assert outcomes["app"].status is Status.SKIPPED  # type: ignore[attr-defined]
    assert outcomes["app"].reason == "not deployed: db failed (run 7)"  # type: ignore[attr-defined]
    assert "db" in asked
