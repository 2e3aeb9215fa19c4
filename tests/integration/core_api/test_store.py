"""The SQLite store with real files: migrations, apply atomicity, racing applies, crashes."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.exceptions import PlanStale
from core.plan.planner import make_plan
from core.resources import check
from core.resources.loader import load_text
from core.store import DB_NAME, Store
from core.store.migrations import MIGRATIONS

REPO = Path(__file__).resolve().parents[3]


def _stacks(n: int, suffix: str = "") -> str:
    out = ['[[server]]\nname = "h1"\n']
    for i in range(n):
        out.append(
            f'[[stack]]\nname = "s{i}"\ndeploy = true\n[stack.config]\nserver = "h1"\n'
            f'run_directory = "stacks/s{i}{suffix}"\n'
        )
    return "\n".join(out)


def _plan(store: Store, text: str, sync: str = "local"):  # type: ignore[no-untyped-def]
    rs = check(load_text(text, "F"))
    rev, state = store.snapshot()
    return make_plan(sync=sync, desired=rs, state=state, base_revision=rev)


def test_migrations_apply_once_and_db_is_wal(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    assert store.schema_version() == MIGRATIONS[-1][0]
    store.close()
    again = Store.open(tmp_path)
    assert again.schema_version() == MIGRATIONS[-1][0]
    again.close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_data_dir_and_database_are_the_owners_only(tmp_path: Path) -> None:
    """They hold deploy logs: the data_dir made 0700, the database and its WAL 0600; a database
    left readable by others (an older core's) is tightened at the next start."""
    data = tmp_path / "data"
    store = Store.open(data)
    store.save_plan(_plan(store, _stacks(1)))
    files = sorted(data.iterdir())
    assert [f.name for f in files] == [DB_NAME, f"{DB_NAME}-shm", f"{DB_NAME}-wal"]
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    store.close()
    for f in data.iterdir():
        f.chmod(0o644)
    Store.open(data).close()
    assert {stat.S_IMODE(f.stat().st_mode) for f in data.iterdir()} == {0o600}


def test_apply_then_plan_again_is_empty_and_plans_round_trip(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    plan = _plan(store, _stacks(3))
    store.save_plan(plan)
    assert store.get_plan(plan.id) == plan
    assert store.apply(plan) == 1
    assert store.get_plan(plan.id).applied_at is not None
    assert _plan(store, _stacks(3)).changes == []  # (the stacks still deploy: never deployed)
    assert store.sync_runs("local")[0].status == "applied"
    with pytest.raises(PlanStale):
        store.apply(plan)


def test_stale_plan_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    first = _plan(store, _stacks(2))
    second = _plan(store, _stacks(2, "x"))
    store.apply(first)
    with pytest.raises(PlanStale, match="make a new plan"):
        store.apply(second)


def test_two_racing_applies_one_wins_state_consistent(tmp_path: Path) -> None:
    a, b = Store.open(tmp_path), Store.open(tmp_path)  # two connections, like two processes
    plan_a = _plan(a, _stacks(50, "a"))
    plan_b = _plan(b, _stacks(50, "b"))
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def run(name: str, store: Store, plan) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        try:
            results[name] = store.apply(plan)
        except PlanStale as exc:
            results[name] = exc

    threads = [
        threading.Thread(target=run, args=("a", a, plan_a)),
        threading.Thread(target=run, args=("b", b, plan_b)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [k for k, v in results.items() if v == 1]
    assert len(wins) == 1, results
    loser = "b" if wins == ["a"] else "a"
    assert isinstance(results[loser], PlanStale)
    suffix = wins[0]
    dirs = {
        r.config["config"]["run_directory"] for r in a.resources().values() if r.kind == "stack"
    }
    assert dirs == {f"stacks/s{i}{suffix}" for i in range(50)}
    assert a.revision() == 1


def test_exception_in_the_middle_leaves_the_old_state(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.apply(_plan(store, _stacks(5)))
    before = store.resources()
    plan = _plan(store, _stacks(5, "new"))

    def boom(i: int) -> None:
        if i == 2:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        store.apply(plan, _between=boom)
    assert store.resources() == before
    assert store.revision() == 1


def test_process_killed_in_the_middle_of_apply_leaves_old_state(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.apply(_plan(store, _stacks(5)))
    before = store.resources()
    plan = _plan(store, _stacks(5, "new"))
    store.save_plan(plan)
    store.close()
    script = textwrap.dedent(f"""
        import os
        from core.store import Store
        store = Store.open({str(tmp_path)!r})
        plan = store.get_plan({plan.id!r})
        def die(i):
            if i == 3:
                os._exit(9)   # no cleanup, no rollback: a crash
        store.apply(plan, _between=die)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=60)
    assert proc.returncode == 9
    after = Store.open(tmp_path)
    assert after.resources() == before
    assert after.revision() == 1
    after.apply(after.get_plan(plan.id))  # and the plan can still be applied whole
    assert {
        r.config["config"]["run_directory"] for r in after.resources().values() if r.kind == "stack"
    } == {f"stacks/s{i}new" for i in range(5)}


_names = st.text("abcdefgh", min_size=1, max_size=6)
_stack = st.fixed_dictionaries(
    {
        "deploy": st.booleans(),
        "run_directory": st.sampled_from(["", "a", "a/b", "stacks/x"]),
        "environment": st.lists(st.sampled_from(["A=1", "B=[[V]]", "C = 3"]), max_size=3),
        "tags": st.lists(st.sampled_from(["x", "y"]), max_size=2, unique=True),
        "secret": st.text("xyz", max_size=5),
    }
)


def _render(stacks: dict[str, dict[str, object]]) -> str:
    out = ['[[server]]\nname = "h1"\n']
    for name, s in stacks.items():
        env = "\n".join(s["environment"])  # type: ignore[arg-type]
        out.append(
            f'[[stack]]\nname = "{name}"\ndeploy = {str(s["deploy"]).lower()}\n'
            f"tags = {list(s['tags'])!r}\n".replace("'", '"')  # type: ignore[call-overload]
            + f'[stack.config]\nserver = "h1"\nrun_directory = "{s["run_directory"]}"\n'
            f'environment = """\n{env}\n"""\n'
        )
        out.append(f'[[variable]]\nname = "V{name}"\nvalue = "{s["secret"]}"\nis_secret = true\n')
    out.append('[[variable]]\nname = "V"\nvalue = "v"\n')
    return "\n".join(out)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.dictionaries(_names, _stack, max_size=6),
    second=st.dictionaries(_names, _stack, max_size=6),
)
def test_property_apply_then_replan_is_empty(
    tmp_path_factory: pytest.TempPathFactory,
    first: dict[str, dict[str, object]],
    second: dict[str, dict[str, object]],
) -> None:
    from core.plan.models import SyncOptions

    store = Store.open(tmp_path_factory.mktemp("db"))
    for stacks in (first, second):
        rs = check(load_text(_render(stacks), "F"))
        assert rs.errors == [], [f.format() for f in rs.errors]
        rev, state = store.snapshot()
        plan = make_plan(
            sync="s", desired=rs, state=state, base_revision=rev, options=SyncOptions(delete=True)
        )
        store.apply(plan)
        rev, state = store.snapshot()
        again = make_plan(
            sync="s", desired=rs, state=state, base_revision=rev, options=SyncOptions(delete=True)
        )
        assert again.changes == [], again
        assert all(d.reasons in (["never deployed"], ["new stack"]) for d in again.deploys)
    store.close()


def test_old_unapplied_plans_are_pruned(tmp_path: Path) -> None:
    import msgspec

    from core.exceptions import PlanNotFound
    from core.store import KEEP_UNAPPLIED_PLANS

    store = Store.open(tmp_path)
    base = _plan(store, _stacks(1))
    ids = []
    for i in range(KEEP_UNAPPLIED_PLANS + 5):
        plan = msgspec.structs.replace(base, id=f"p{i}", created_at=float(i))
        store.save_plan(plan)
        ids.append(plan.id)
    with pytest.raises(PlanNotFound):
        store.get_plan(ids[0])
    assert store.get_plan(ids[-1]).id == ids[-1]
