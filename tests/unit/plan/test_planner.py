"""The planner is pure: resource sets and stored state in, a deterministic plan out."""

from __future__ import annotations

from core.plan.canonical import canonical, content_hash
from core.plan.models import StoredResource, SyncOptions
from core.plan.planner import make_plan, tracked_files
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
    assert all("new stack" in d.reasons for d in plan.deploys)


def test_plan_is_deterministic_and_id_depends_on_content() -> None:
    rs = load(BASE)
    a = make_plan(sync="s", desired=rs, state={}, base_revision=0, created_at=1.0)
    b = make_plan(sync="s", desired=load(BASE), state={}, base_revision=0, created_at=2.0)
    assert a.id == b.id
    c = make_plan(sync="s", desired=rs, state={}, base_revision=1)
    assert c.id != a.id


def test_no_change_gives_an_empty_plan() -> None:
    rs = load(BASE)
    plan = make_plan(sync="s", desired=rs, state=state_of(rs), base_revision=3)
    assert plan.empty, plan


def test_update_has_field_level_diff_and_dependents_redeploy() -> None:
    old = load(BASE)
    new = load(BASE.replace('run_directory = "stacks/db"', 'run_directory = "stacks/db2"'))
    plan = make_plan(sync="s", desired=new, state=state_of(old), base_revision=1)
    [change] = plan.changes
    assert (change.kind, change.name, change.action) == ("stack", "db", "update")
    [field] = change.fields
    assert (field.path, field.old, field.new) == ("config.run_directory", "stacks/db", "stacks/db2")
    reasons = {d.stack: d.reasons for d in plan.deploys}
    assert reasons["db"] == ["config changed: config.run_directory"]
    assert reasons["web"] == ['after "db", which is deployed']
    assert "proxy" not in reasons  # tiers order deploys, they do not trigger them


def test_cosmetic_change_updates_without_redeploy() -> None:
    old = load(BASE)
    new = load(BASE.replace('tags = ["data"]', 'tags = ["data", "prod"]'))
    plan = make_plan(sync="s", desired=new, state=state_of(old), base_revision=1)
    assert [c.name for c in plan.changes] == ["db"]
    assert plan.deploys == []


def test_changed_files_redeploy_the_stacks_that_track_them() -> None:
    rs = load(BASE)
    assert tracked_files(rs.resources[("stack", "db")].config) == [
        "stacks/db/compose.yaml",
        "stacks/db/db.env",
    ]
    plan = make_plan(
        sync="s",
        desired=rs,
        state=state_of(rs),
        base_revision=1,
        changed_paths={"stacks/db/db.env", "README.md"},
    )
    reasons = {d.stack: d.reasons for d in plan.deploys}
    assert reasons == {
        "db": ["files changed: stacks/db/db.env"],
        "web": ['after "db", which is deployed'],
    }
    # The callable form lets the git layer answer per stack (per repository).
    plan2 = make_plan(
        sync="s",
        desired=rs,
        state=state_of(rs),
        base_revision=1,
        changed_paths=lambda res: ["stacks/proxy/compose.yaml"] if res.name == "proxy" else [],
    )
    assert [d.stack for d in plan2.deploys] == ["proxy"]


def test_variable_change_redeploys_users_and_secrets_never_show() -> None:
    old = load(BASE)
    new = load(BASE.replace("hunter2-secret", "correct-horse"))
    plan = make_plan(sync="s", desired=new, state=state_of(old), base_revision=1)
    [change] = plan.changes
    assert (change.kind, change.name) == ("variable", "DB_PASSWORD")
    assert {d.stack for d in plan.deploys} == {"db", "web"}
    assert "variables changed: DB_PASSWORD" in plan.deploys[0].reasons
    from core.plan.canonical import encode

    blob = encode(plan).decode()
    assert "hunter2" not in blob and "correct-horse" not in blob
    assert "***" in blob


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
