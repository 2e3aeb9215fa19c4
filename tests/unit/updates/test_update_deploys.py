"""An image update's deploy, without sockets: the commands Compose and Swarm get for some
services (Komodo's DeployStack { services }: bin/periphery/src/api/compose.rs puts
``-- SERVICES`` after ``pull`` and ``up -d``), what the agent reads of the engine's inspect
objects, what the reconciler does with an intent's ``pull``, and which stacks the checker looks
at (Komodo's GlobalAutoUpdate query: poll_for_updates or auto_update)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from core.config import Account, CoreConfig, ImageRegistry
from core.deploy.deployer import Prepared
from core.deploy.jobs import JobPlan
from core.deploy.stack import StackJob, deploy_command
from core.plan.models import StoredResource
from core.resources.variables import Values
from core.updates.checker import credentials_for, targets_from
from core.updates.redeploy import runs_desired, update_job
from core.updates.reference import parse_reference
from periphery.ops.compose import compose_plan
from periphery.ops.images import compose_service_images, swarm_service_images
from periphery.ops.swarm import service_update_argv
from protocol.messages import ComposeUp, DeployMode, ServiceImage, SwarmDeploy

DIGEST = "sha256:" + "1" * 64
NEWER = "sha256:" + "2" * 64


def plan(**kw: object) -> list[list[str]]:
    p = compose_plan(
        ("docker", "compose"),
        "web",
        ["compose.yaml"],
        ".env",
        [],
        ["--remove-orphans"],
        auto_pull=bool(kw.pop("auto_pull", False)),
        destroy_before_deploy=False,
        run_directory=Path("/r"),
        **kw,  # type: ignore[arg-type]
    )
    return [s.argv for s in (p.pull, p.up) if s is not None]


def test_compose_pulls_and_brings_up_only_the_services_given() -> None:
    base = ["docker", "compose", "-p", "web", "-f", "compose.yaml", "--env-file", ".env"]
    assert plan(services=["app", "-odd"], pull=True) == [
        [*base, "pull", "--", "app", "-odd"],
        [*base, "up", "-d", "--remove-orphans", "--", "app", "-odd"],
    ]
    # pull forced without auto_pull; all services when none is named
    assert plan(pull=True) == [[*base, "pull"], [*base, "up", "-d", "--remove-orphans"]]
    assert plan() == [[*base, "up", "-d", "--remove-orphans"]]


def test_swarm_updates_one_service_to_its_tags_current_digest() -> None:
    assert service_update_argv("st_web", "127.0.0.1:5000/a:1", registry_auth=True) == [
        "docker",
        "service",
        "update",
        "--detach",
        "--image",
        "127.0.0.1:5000/a:1",
        "--with-registry-auth",
        "--",
        "st_web",
    ]


def job(mode: DeployMode, **kw: object) -> StackJob:
    return replace(StackJob(name="st", mode=mode, server="s", repo_url="", commit="c"), **kw)  # type: ignore[arg-type]


def test_the_job_carries_the_update_to_the_commands() -> None:
    compose = deploy_command(
        job(DeployMode.COMPOSE, pull=True, services=("app",), auto_pull=False), ""
    )
    assert isinstance(compose, ComposeUp)
    assert (compose.pull, compose.services, compose.auto_pull) == (True, ["app"], False)
    swarm = deploy_command(job(DeployMode.SWARM, pull=True, services=("app",)), "")
    assert isinstance(swarm, SwarmDeploy) and swarm.services == ["app"]
    plain = deploy_command(job(DeployMode.COMPOSE), "")
    assert isinstance(plain, ComposeUp) and (plain.pull, plain.services) == (False, [])


def test_the_agent_reads_running_digests_from_inspect_objects() -> None:
    """monitor/resources.rs: a container's image's RepoDigests; a service's pinned digest."""
    containers = [
        {
            "Image": "sha256:img1",
            "Config": {"Image": "r/a:1", "Labels": {"com.docker.compose.service": "web"}},
        },
        {
            "Image": "sha256:img1",
            "Config": {"Image": "r/a:1", "Labels": {"com.docker.compose.service": "web"}},
        },
        {
            "Image": "sha256:img2",
            "Config": {"Image": "r/b", "Labels": {"com.docker.compose.service": "db"}},
        },
        {
            "Image": "sha256:img3",
            "Config": {
                "Image": "r/c",
                "Labels": {
                    "com.docker.compose.service": "job",
                    "com.docker.compose.oneoff": "True",
                },
            },
        },
    ]
    images = {"sha256:img1": {"RepoDigests": [f"r/a@{DIGEST}"]}, "sha256:img2": {}}
    assert compose_service_images(containers, images) == [
        ServiceImage("db", "r/b", []),  # a local build: no digest, never "an update"
        ServiceImage("web", "r/a:1", [f"r/a@{DIGEST}"]),
    ]
    services = [
        {
            "Spec": {
                "Name": "st_web",
                "Labels": {"com.docker.stack.image": "r/a:1"},
                "TaskTemplate": {"ContainerSpec": {"Image": f"r/a:1@{DIGEST}"}},
            }
        },
        {
            "Spec": {
                "Name": "st_local",
                "Labels": {},
                "TaskTemplate": {"ContainerSpec": {"Image": "local/x:1"}},
            }
        },
    ]
    assert swarm_service_images("st", services) == [
        ServiceImage("local", "local/x:1", []),
        ServiceImage("web", "r/a:1", [f"r/a:1@{DIGEST}"]),
    ]


def prepared(spec: str = "S", commit: str = "C") -> Prepared:
    j = job(DeployMode.COMPOSE, commit=commit)
    return Prepared(JobPlan(j, None, ("s",)), j, Values(), spec)


@pytest.mark.parametrize(
    ("last", "services", "expected"),
    [
        (("healthy", "S", "C"), ["b", "a"], ("a", "b")),  # at the desired state: only those
        (("healthy", "S", "old"), ["a"], ()),  # another commit: the whole stack
        (("healthy", "T", "C"), ["a"], ()),  # another spec
        (("failed", "S", "C"), ["a"], ()),  # the last deploy failed: the whole stack
        (None, ["a"], ()),  # never finished one
        (("healthy", "S", "C"), [], ()),  # auto_update_all_services
    ],
)
def test_an_update_brings_up_some_services_only_when_safe(
    last: tuple[str, str, str] | None, services: list[str], expected: tuple[str, ...]
) -> None:
    out = update_job(prepared(), services, last)
    assert out.job.pull is True and out.job.services == expected
    assert runs_desired(last, prepared()) is (last == ("healthy", "S", "C"))


def stored(kind: str, name: str, config: dict[str, object]) -> StoredResource:
    return StoredResource(kind, name, "local", {"config": config}, "h")


def test_the_checker_watches_poll_for_updates_and_auto_update_stacks() -> None:
    found = targets_from(
        {
            ("swarm", "lab"): stored("swarm", "lab", {"servers": ["m1", "m2"]}),
            ("stack", "polled"): stored(
                "stack", "polled", {"server": "nas", "poll_for_updates": True}
            ),
            ("stack", "auto"): stored(
                "stack",
                "auto",
                {
                    "swarm": "lab",
                    "auto_update": True,
                    "project_name": "auto-prj",
                    "auto_update_skip_services": ["db"],
                },
            ),
            ("stack", "plain"): stored("stack", "plain", {"server": "nas"}),
        }
    )
    assert {n for n, t in found.items() if t.watched} == {"polled", "auto"}  # auto implies poll
    auto = found["auto"]
    assert (auto.mode, auto.servers, auto.docker_name) == (
        DeployMode.SWARM,
        ("m1", "m2"),
        "auto-prj",
    )
    assert auto.skip_services == ("db",) and auto.auto_update and not auto.all_services
    assert found["polled"].servers == ("nas",) and not found["polled"].auto_update


def test_registry_credentials_come_from_image_registry() -> None:
    config = CoreConfig(
        data_dir="",
        api_tokens=["-" * 16],
        image_registry=[
            ImageRegistry(
                domain="ghcr.io",
                accounts=[Account(username="me", token="t1"), Account(username="ci", token="t2")],
            ),
            ImageRegistry(domain="docker.io", accounts=[Account(username="hub", token="t3")]),
        ],
    )
    target = targets_from(
        {
            ("stack", "s"): stored(
                "stack",
                "s",
                {"server": "h", "registry_provider": "ghcr.io", "registry_account": "ci"},
            )
        }
    )["s"]
    ghcr = credentials_for(config, parse_reference("ghcr.io/o/app:1"), target)
    assert ghcr is not None and (ghcr.username, ghcr.token) == ("ci", "t2")  # the stack's own
    hub = credentials_for(config, parse_reference("nginx"), target)
    assert hub is not None and hub.username == "hub"  # the first account of that registry
    assert credentials_for(config, parse_reference("quay.io/o/a"), target) is None


def test_global_auto_update_says_what_it_found_per_stack() -> None:
    from core.updates.checker import ServiceUpdate, StackCheck, summary_lines

    results = [
        StackCheck(
            "web",
            [
                ServiceUpdate("app", "r/app:1", [DIGEST], NEWER, True),
                ServiceUpdate("db", "r/db:1", [], "", False, error="the registry answered 500"),
            ],
            run=12,
        ),
        StackCheck("lost", error="server 'nas': no answer in 30s"),
    ]
    assert summary_lines(results) == [
        "Checked Stack web ✅; newer images: app (r/app:1); redeploying in run 12; not looked up:"
        " db: the registry answered 500",
        "Check Stack lost: server 'nas': no answer in 30s",
    ]
    assert summary_lines([]) == ["no stack has poll_for_updates or auto_update"]
