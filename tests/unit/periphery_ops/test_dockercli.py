"""periphery.ops.dockercli: what the two docker CLIs users have can do (pure: no docker run).

Debian 12's docker.io is 20.10 with docker-compose v1; Docker CE is 27/28 with the v2 plugin.
The minimums are docker/cli's: stack jobs from 23.0 (docker/cli#2907), ``stack deploy --detach``
from 26.0, ``stack config`` from 23.0."""

from __future__ import annotations

import logging

import pytest

from periphery.exceptions import StackDeployFailed
from periphery.ops.dockercli import (
    STACK_CONFIG,
    STACK_DETACH,
    STACK_JOBS,
    Capabilities,
    parse_version,
)

DEBIAN = Capabilities("20.10.24+dfsg1", ("docker-compose",), "1.29.2")
CE = Capabilities("28.2.2", ("docker", "compose"), "2.29.1")
NO_DOCKER = Capabilities()
NO_COMPOSE = Capabilities("20.10.24+dfsg1")


@pytest.mark.parametrize(
    ("text", "want"),
    [("20.10.24+dfsg1", (20, 10)), ("28.2.2", (28, 2)), ("v2.29.1", (2, 29)), ("", None),
     ("unknown", None)],
)
def test_versions_are_read(text: str, want: tuple[int, int] | None) -> None:
    assert parse_version(text) == want


def test_features_by_cli() -> None:
    assert not DEBIAN.has(STACK_JOBS) and not DEBIAN.has(STACK_DETACH)
    assert not DEBIAN.has(STACK_CONFIG)
    assert CE.has(STACK_JOBS) and CE.has(STACK_DETACH) and CE.has(STACK_CONFIG)
    assert not NO_DOCKER.has(STACK_JOBS)
    assert Capabilities("23.0.0").has(STACK_JOBS) and not Capabilities("23.0.0").has(STACK_DETACH)


def test_start_says_once_what_the_cli_cannot_do() -> None:
    found = DEBIAN.describe()
    assert found[0] == (logging.INFO, "docker CLI 20.10.24+dfsg1; compose: docker-compose 1.29.2")
    warnings = [m for level, m in found if level == logging.WARNING]
    assert warnings == [
        "docker CLI 20.10.24+dfsg1: a stack file with swarm jobs (deploy.mode: "
        "replicated-job/global-job) needs docker CLI 23.0 or newer; stacks that use it will "
        "fail to deploy"
    ]
    assert [lvl for lvl, _ in CE.describe()] == [logging.INFO]
    assert "no docker CLI on PATH" in NO_DOCKER.describe()[0][1]
    assert "install docker.io" in NO_DOCKER.describe()[0][1]
    assert any("install docker-compose" in m for _, m in NO_COMPOSE.describe())


def test_compose_is_required_with_what_to_install() -> None:
    assert DEBIAN.require_compose() == ("docker-compose",)
    assert CE.require_compose() == ("docker", "compose")
    with pytest.raises(StackDeployFailed, match="install docker-compose"):
        NO_COMPOSE.require_compose()
    with pytest.raises(StackDeployFailed, match="no docker CLI on this host: install docker.io"):
        NO_DOCKER.require_compose()


def test_a_job_in_a_stack_file_needs_cli_23() -> None:
    doc = {"services": {"web": {"image": "x"}, "migrate": {"deploy": {"mode": "global-job"}}}}
    with pytest.raises(StackDeployFailed) as info:
        DEBIAN.check_stack_files([("stack.yml", doc)])
    assert str(info.value).startswith(
        "stack.yml: service 'migrate' has deploy.mode global-job: a stack file with swarm jobs"
    )
    assert "needs docker CLI 23.0 or newer (this host has 20.10.24+dfsg1)" in str(info.value)
    CE.check_stack_files([("stack.yml", doc)])  # fine where the CLI has them
    DEBIAN.check_stack_files([("stack.yml", {"services": {"web": {"deploy": {"mode": "global"}}}})])
    DEBIAN.check_stack_files([("odd.yml", ["not", "a", "mapping"]), ("empty.yml", None)])
