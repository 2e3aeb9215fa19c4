"""The planner is pure: resource sets, stored state and convergence records in, a deterministic
plan out. A stack deploys when it is not converged (core/reconcile/convergence.py), and, as
Komodo's sync does (bin/core/src/sync/deploy.rs, ``insert_target_using_after_list``: "parent
dependency is deploying"), when a stack it names in ``after`` deploys."""

from __future__ import annotations

import msgspec
import pytest

from core.exceptions import PlanError
from core.plan.canonical import canonical, content_hash
from core.plan.models import StoredResource, SyncOptions
from core.plan.planner import DeployInputs, make_plan, stack_spec, tracked_files
from core.reconcile.convergence import Record
from core.resources import ResourceSet, check
from core.resources.loader import load_text

BASE = """
tiers = ["infra", "app"]

[[server]]
name = "h1"

[[variable]]
name = "TZ"
value = "UTC"

[[variable]]
name = "DB_PASSWORD"
value = "hunter2-secret"
is_secret = true

[[stack]]
name = "proxy"
deploy = true
tier = "infra"
[stack.config]
server = "h1"
run_directory = "stacks/proxy"

[[stack]]
name = "web"
deploy = true
tier = "app"
after = ["db"]
[stack.config]
server = "h1"
run_directory = "stacks/web"
environment = "TZ=[[TZ]]"

[[stack]]
name = "db"
deploy = true
tier = "app"
tags = ["data"]
[stack.config]
server = "h1"
run_directory = "stacks/db"
environment = "PASSWORD=[[DB_PASSWORD]]"
additional_env_files = ["db.env"]

[[stack]]
name = "manual"
deploy = false
[stack.config]
server = "h1"
"""


def load(text: str) -> ResourceSet:
    rs = check(load_text(text, "F"))
    assert rs.errors == [], [f.format() for f in rs.errors]
    return rs


def deployed(rs: ResourceSet, commit: str = "c0", **over: Record) -> dict[str, Record]:
    """Records as if every ``deploy = true`` stack of ``rs`` ran healthy at ``commit``."""
    out = {}
    for res in rs.stacks():
        if res.deploy:
            spec, form = stack_spec(rs, res)
            out[res.name] = Record(
                "healthy", ok_spec=spec, ok_form=form, ok_commit=commit, engine="healthy"
            )
    out.update(over)
    return out


def inputs(records: dict[str, Record], **kw: object) -> DeployInputs:
    return DeployInputs(records=records, **kw)  # type: ignore[arg-type]


def state_of(rs: ResourceSet, sync: str = "s") -> dict[tuple[str, str], StoredResource]:
    out = {}
    for key, res in rs.resources.items():
        c = canonical(res)
        out[key] = StoredResource(res.kind, res.name, sync, c, content_hash(c))
    return out


def test_first_plan_creates_everything_and_deploys_in_tier_order() -> None:
    rs = load(BASE)
    plan = make_plan(sync="s", desired=rs, state={}, base_revision=0)
    assert {c.action for c in plan.changes} == {"create"}
    assert len(plan.changes) == len(rs.resources)
    assert [d.stack for d in plan.deploys] == ["proxy", "db", "web"]
    assert plan.deploy_waves == [["proxy"], ["db"], ["web"]]
    assert all(d.reasons == ["new stack"] for d in plan.deploys)
    assert ("stack", "manual") in plan.defines and plan.tiers == ["infra", "app"]


def test_plan_is_deterministic_and_id_depends_on_content() -> None:
    rs = load(BASE)
    a = make_plan(sync="s", desired=rs, state={}, base_revision=0, created_at=1.0)
    b = make_plan(sync="s", desired=load(BASE), state={}, base_revision=0, created_at=2.0)
    assert a.id == b.id
    c = make_plan(sync="s", desired=rs, state={}, base_revision=1)
    assert c.id != a.id


def test_converged_and_unchanged_gives_an_empty_plan() -> None:
    rs = load(BASE)
    plan = make_plan(
        sync="s", desired=rs, state=state_of(rs), base_revision=3, inputs=inputs(deployed(rs))
    )
    assert plan.empty, plan


def test_unchanged_files_still_deploy_what_is_not_converged() -> None:
    """The planner compares with what was deployed, not only with the files: a stack that
    failed, was skipped or interrupted, never ran, or drifted is listed with why."""
    rs = load(BASE)
    records = deployed(
        rs,
        proxy=Record("failed", "deploy: compose up exited 1", ok_spec=""),
        db=Record("interrupted", "the core stopped"),
    )
    del records["web"]  # never deployed (the apply that had it was cut short)
    plan = make_plan(
        sync="s", desired=rs, state=state_of(rs), base_revision=3, inputs=inputs(records)
    )
    reasons = {d.stack: d.reasons for d in plan.deploys}
    assert reasons["proxy"] == [
        "never deployed healthy",
        "last deploy failed: deploy: compose up exited 1",
    ]
    assert reasons["db"][-1] == "last deploy interrupted: the core stopped"
    assert reasons["web"] == ["never deployed"]
    assert plan.changes == []
    drifted = deployed(rs)
    drifted["db"] = msgspec.structs.replace(
        drifted["db"], engine="unhealthy", engine_detail="db: container exited"
    )
    plan2 = make_plan(
        sync="s", desired=rs, state=state_of(rs), base_revision=3, inputs=inputs(drifted)
    )
    assert {d.stack: d.reasons for d in plan2.deploys} == {
        "db": ["drifted: db: container exited"],
        "web": ['after "db", which is deployed'],
    }


def test_deploy_true_added_later_deploys_a_stack_never_deployed() -> None:
    old = load(BASE)
    new = load(BASE.replace('name = "manual"\ndeploy = false', 'name = "manual"\ndeploy = true'))
    plan = make_plan(
        sync="s", desired=new, state=state_of(old), base_revision=1, inputs=inputs(deployed(old))
    )
    assert [c.name for c in plan.changes] == ["manual"]
    assert {d.stack: d.reasons for d in plan.deploys} == {"manual": ["never deployed"]}


def test_update_has_field_level_diff_and_dependents_redeploy() -> None:
    old = load(BASE)
    new = load(BASE.replace('run_directory = "stacks/db"', 'run_directory = "stacks/db2"'))
    plan = make_plan(
        sync="s", desired=new, state=state_of(old), base_revision=1, inputs=inputs(deployed(old))
    )
    [change] = plan.changes
    assert (change.kind, change.name, change.action) == ("stack", "db", "update")
    [field] = change.fields
    assert (field.path, field.old, field.new) == ("config.run_directory", "stacks/db", "stacks/db2")
    reasons = {d.stack: d.reasons for d in plan.deploys}
    assert reasons["db"] == ["changed: config.run_directory"]
    assert reasons["web"] == ['after "db", which is deployed']
    assert "proxy" not in reasons  # tiers order deploys, they do not trigger them


def test_wait_for_orders_without_redeploying() -> None:
    text = BASE.replace('after = ["db"]', 'wait_for = ["db"]')
    old = load(text)
    new = load(text.replace('run_directory = "stacks/db"', 'run_directory = "stacks/db2"'))
    plan = make_plan(
        sync="s", desired=new, state=state_of(old), base_revision=1, inputs=inputs(deployed(old))
    )
    assert [d.stack for d in plan.deploys] == ["db"]  # web waits for db, but is not redeployed
    both = make_plan(sync="s", desired=new, state={}, base_revision=0)
    assert both.deploy_waves == [["proxy"], ["db"], ["web"]]  # and still comes after it


def test_cosmetic_change_updates_without_redeploy() -> None:
    old = load(BASE)
    new = load(BASE.replace('tags = ["data"]', 'tags = ["data", "prod"]'))
    plan = make_plan(
        sync="s", desired=new, state=state_of(old), base_revision=1, inputs=inputs(deployed(old))
    )
    assert [c.name for c in plan.changes] == ["db"]
    assert plan.deploys == []


def test_changed_files_redeploy_the_stacks_that_track_them() -> None:
    rs = load(BASE)
    assert tracked_files(rs.resources[("stack", "db")].config) == [
        "stacks/db/compose.yaml",
        "stacks/db/db.env",
    ]
    asked = []

    def changed(res: object, old: str, new: str) -> list[str]:
        asked.append((old, new))
        return ["stacks/db/db.env", "README.md"]

    plan = make_plan(
        sync="s",
        desired=rs,
        state=state_of(rs),
        base_revision=1,
        inputs=inputs(deployed(rs), commit_of=lambda res: "c1", changed_files=changed),
    )
    reasons = {d.stack: d.reasons for d in plan.deploys}
    assert reasons == {
        "db": ["files changed: stacks/db/db.env"],
        "web": ['after "db", which is deployed'],
    }
    assert set(asked) == {("c0", "c1")}
    unknown = make_plan(
        sync="s",
        desired=rs,
        state=state_of(rs),
        base_revision=1,
        inputs=inputs(deployed(rs), commit_of=lambda res: "c1", changed_files=lambda *a: None),
    )
    assert {d.stack for d in unknown.deploys} == {"proxy", "db", "web"}  # cannot tell: deploy


def test_variable_change_redeploys_users_and_secrets_never_show() -> None:
    old = load(BASE)
    new = load(BASE.replace("hunter2-secret", "correct-horse"))
    plan = make_plan(
        sync="s", desired=new, state=state_of(old), base_revision=1, inputs=inputs(deployed(old))
    )
    [change] = plan.changes
    assert (change.kind, change.name) == ("variable", "DB_PASSWORD")
    assert {d.stack for d in plan.deploys} == {"db", "web"}
    assert plan.deploys[0].reasons == ["changed: values.DB_PASSWORD"]
    from core.plan.canonical import encode

    blob = encode(plan).decode()
    assert "hunter2" not in blob and "correct-horse" not in blob
    assert "***" in blob


def test_a_resource_has_one_owner() -> None:
    rs = load(BASE)
    state = state_of(rs, sync="other")
    owners = {key: {"other"} for key in rs.resources}
    with pytest.raises(PlanError, match=r"stack db \(also defined by sync other\)"):
        make_plan(
            sync="s", desired=rs, state=state, base_revision=1, inputs=inputs({}, owners=owners)
        )
    # The other sync no longer defines them: this one takes them over.
    taken = make_plan(
        sync="s", desired=rs, state=state, base_revision=1, inputs=inputs(deployed(rs))
    )
    assert all(f.path == "(sync)" for c in taken.changes for f in c.fields)
    # A sync that defines the owner hands its copies over (the local file of a
    # self-referencing git sync): a note each, no error, nothing applied.
    parent = load(
        BASE + '\n[[resource_sync]]\nname = "other"\n[resource_sync.config]\nrepo = "a/b"\n'
    )
    handed = make_plan(
        sync="s",
        desired=parent,
        state=state,
        base_revision=1,
        inputs=inputs(deployed(rs), owners=owners),
    )
    assert [c.name for c in handed.changes] == ["other"]
    assert any("owned by sync other" in n for n in handed.notes)


def test_deletes_only_with_delete_and_only_own_resources() -> None:
    old = load(BASE)
    new = load(BASE.split('[[stack]]\nname = "manual"')[0])
    state = state_of(old)
    kept = make_plan(sync="s", desired=new, state=state, base_revision=1)
    assert kept.changes == [] and "manual" in kept.notes[0]
    gone = make_plan(
        sync="s", desired=new, state=state, base_revision=1, options=SyncOptions(delete=True)
    )
    assert [(c.name, c.action) for c in gone.changes] == [("manual", "delete")]
    other = make_plan(
        sync="other", desired=new, state=state, base_revision=1, options=SyncOptions(delete=True)
    )
    assert all(c.action != "delete" for c in other.changes)


def test_match_tags_filters() -> None:
    rs = load(BASE)
    plan = make_plan(
        sync="s", desired=rs, state={}, base_revision=0, options=SyncOptions(match_tags=["data"])
    )
    assert [(c.kind, c.name) for c in plan.changes] == [("stack", "db")]
