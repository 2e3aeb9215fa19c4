"""core/reconcile/convergence.py: is a stack converged, and why not (pure)."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from core.reconcile.convergence import (
    ANY_SPEC,
    RETRY_MAX,
    Desired,
    Record,
    due,
    judge,
    retry_delay,
)

D = Desired(
    "web",
    "spec1",
    {"config": {"run_directory": "stacks/web"}},
    "c1",
    ("stacks/web/compose.yaml",),
    "stacks/web",
)
OK = Record("healthy", ok_spec="spec1", ok_form=D.form, ok_commit="c1", engine="healthy")


def test_converged_when_desired_recorded_and_engine_agree() -> None:
    v = judge(D, OK)
    assert v.converged and v.kinds == ()


def test_each_way_of_not_being_converged_says_why() -> None:
    assert judge(D, Record()).reasons == ("never deployed",)
    failed = judge(D, Record("failed", "pre_deploy: exited with 3\nmore", ok_spec=""))
    assert failed.kinds == ("never", "failed")
    assert failed.reasons[1] == "last deploy failed: pre_deploy: exited with 3"
    changed = judge(D, Record("healthy", ok_spec="old", ok_form={"config": {}}, ok_commit="c1"))
    assert changed.reasons == ("changed: config.run_directory",)
    drifted = judge(
        D,
        Record(
            "healthy",
            ok_spec="spec1",
            ok_commit="c1",
            engine="missing",
            engine_detail="nothing of the stack runs",
        ),
    )
    assert drifted.reasons == ("drifted: nothing of the stack runs",)
    skipped = judge(
        D, Record("skipped", "not deployed: db failed", ok_spec="spec1", ok_commit="c1")
    )
    assert skipped.kinds == ("skipped",)


def test_a_new_commit_counts_only_when_it_touches_the_stack() -> None:
    old = Record("healthy", ok_spec="spec1", ok_commit="c0", engine="healthy")
    assert judge(D, old, lambda a, b: ["README.md"]).converged
    touched = judge(D, old, lambda a, b: ["stacks/web/compose.yaml"])
    assert touched.reasons == ("files changed: stacks/web/compose.yaml",)
    beside = judge(D, old, lambda a, b: ["stacks/web/Caddyfile"])  # under its run directory
    assert beside.kinds == ("files",)
    unknown = judge(D, old, lambda a, b: None)
    assert unknown.kinds == ("files",) and "unknown" in unknown.reasons[0]


def test_a_deploy_in_flight_of_what_is_desired_needs_nothing_more() -> None:
    waiting = judge(D, Record("pending", run=3, ok_spec="spec1", ok_commit="c1"))
    assert waiting.kinds == ("deploying",) and not waiting.needs_deploy
    same = judge(D, Record("running", run=3, run_spec="spec1", run_commit="c1"))
    assert not same.needs_deploy
    older = judge(D, Record("running", run=3, run_spec="spec0", run_commit="c1"))
    assert older.needs_deploy and older.kinds == ("deploying", "changed")


def test_healthy_before_specs_were_kept_is_taken_as_current() -> None:
    legacy = Record("healthy", ok_spec=ANY_SPEC, ok_commit="c1", engine="healthy")
    assert judge(D, legacy).converged


def test_what_the_reconciler_does_by_itself() -> None:
    now = 1000.0
    assert due(judge(D, Record()), now)  # never deployed
    assert not due(judge(D, OK), now)
    backing_off = Record("failed", "x", ok_spec="spec1", ok_commit="c1", retry_at=now + 30)
    assert not due(judge(D, backing_off), now)  # its backoff is not over
    assert due(judge(D, backing_off), now + 31)
    # a changed desired state is retried at once, backoff or not
    changed = Record("failed", "x", ok_spec="spec0", ok_form={}, ok_commit="c1", retry_at=now + 30)
    assert due(judge(D, changed), now)
    drifted = Record("healthy", ok_spec="spec1", ok_commit="c1", engine="unhealthy")
    assert not due(judge(D, drifted), now)  # on_drift decides that


@given(st.integers(min_value=0, max_value=100))
def test_retries_back_off_up_to_an_hour(failures: int) -> None:
    delay = retry_delay(failures)
    assert 0 <= delay <= RETRY_MAX
    assert delay >= retry_delay(failures - 1) if failures > 0 else delay == 0
