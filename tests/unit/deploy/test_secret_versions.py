"""The rule for swarm secrets that change (core.deploy.secrets): pure, no engine."""

from __future__ import annotations

import hashlib

from core.deploy.secrets import (
    LABEL,
    current_versions,
    deploy_env,
    env_var,
    plan_secrets,
    valid_logical_name,
    versioned_name,
)
from protocol.messages import SecretInfo


def info(name: str, logical: str, index: int, *users: tuple[str, str]) -> SecretInfo:
    return SecretInfo(
        name=name,
        labels={LABEL: logical},
        index=index,
        services=[s for s, _ in users],
        stacks=sorted({st for _, st in users}),
    )


def test_a_version_is_named_by_its_content() -> None:
    digest = hashlib.sha256(b"hunter2").hexdigest()[:8]
    assert versioned_name("db_password", b"hunter2") == f"db_password_{digest}"
    assert versioned_name("db_password", b"hunter2") == versioned_name("db_password", b"hunter2")
    assert versioned_name("db_password", b"hunter3") != versioned_name("db_password", b"hunter2")
    assert len(versioned_name("x" * 55, b"v")) <= 64  # Docker's limit


def test_logical_names_and_their_variables() -> None:
    assert env_var("db_password") == "DB_PASSWORD_SECRET"
    assert env_var("op-connect.token") == "OP_CONNECT_TOKEN_SECRET"
    assert valid_logical_name("db_password")
    assert not valid_logical_name("-rm")
    assert not valid_logical_name("a" * 56)
    assert not valid_logical_name("with space")


def test_deploys_get_the_pinned_version_else_the_newest() -> None:
    infos = [info("db_aaaa", "db", 10), info("db_bbbb", "db", 20), info("api_cccc", "api", 5)]
    assert current_versions(infos) == {"db": "db_bbbb", "api": "api_cccc"}
    assert current_versions(infos, {"db": "db_aaaa"}) == {"db": "db_aaaa", "api": "api_cccc"}
    # a pinned version that does not exist (yet) does not hide the ones that do
    assert current_versions(infos, {"db": "db_zzzz"})["db"] == "db_bbbb"
    assert current_versions([SecretInfo(name="unlabelled", index=99)]) == {}
    assert deploy_env({"db": "db_bbbb"}) == {"DB_SECRET": "db_bbbb"}


def test_a_new_value_is_created_its_users_redeployed_and_unused_old_versions_removed() -> None:
    wanted = {"db": "db_new1", "api": "api_same"}
    infos = [
        info("db_old1", "db", 1, ("pg_postgres", "pg"), ("auth_server", "auth")),
        info("db_old2", "db", 2),  # nobody uses it
        info("api_same", "api", 3, ("web_app", "web")),
        info("other_1", "other", 4, ("x_y", "x")),  # not ours to touch
    ]
    plan = plan_secrets(wanted, infos)
    assert plan.create == ["db"]
    assert plan.stale == {"auth": ["db_old1"], "pg": ["db_old1"]}
    assert plan.stale_stacks == ["auth", "pg"]
    assert plan.removable == ["db_old2"]
    assert plan.in_use == {"db_old1": ["pg_postgres", "auth_server"]}


def test_once_the_users_moved_the_old_version_can_go() -> None:
    wanted = {"db": "db_new1"}
    infos = [info("db_old1", "db", 1), info("db_new1", "db", 2, ("pg_postgres", "pg"))]
    plan = plan_secrets(wanted, infos)
    assert plan.create == [] and plan.stale == {} and plan.in_use == {}
    assert plan.removable == ["db_old1"]


def test_nothing_to_do_when_everything_is_current() -> None:
    plan = plan_secrets({"db": "db_1"}, [info("db_1", "db", 1, ("pg_postgres", "pg"))])
    assert (plan.create, plan.stale, plan.removable, plan.in_use) == ([], {}, [], {})
