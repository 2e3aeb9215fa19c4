"""The engine fixture: the image exists, the swarm is active, cleanup removes only its own."""

from __future__ import annotations

import secrets

import pytest

pytestmark = pytest.mark.docker


def test_engine_is_ready(docker_env) -> None:
    assert docker_env.docker("info", "--format", "{{.Swarm.LocalNodeState}}") == "active"
    out = docker_env.docker(
        "run",
        "--rm",
        docker_env.image,
        "sh",
        "-c",
        "cat /www/index.html; for a in httpd wget sleep nc; do which $a; done",
    )
    assert "stackward test" in out and "/bin/httpd" in out and "/bin/nc" in out


def test_cleanup_removes_only_prefixed_objects(docker_env) -> None:
    other = f"keep{secrets.token_hex(3)}"
    mine = docker_env.name("c")
    try:
        for name in (other, mine):
            docker_env.docker(
                "run", "-d", "--init", "--name", name, docker_env.image, "sleep", "600"
            )
        docker_env.docker(
            "service",
            "create",
            "-d",
            "--name",
            docker_env.name("svc"),
            docker_env.image,
            "sleep",
            "600",
        )
        docker_env.cleanup()
        names = docker_env.docker("ps", "-a", "--format", "{{.Names}}").split()
        assert other in names and mine not in names
        assert docker_env.name("svc") not in docker_env.docker(
            "service", "ls", "--format", "{{.Name}}"
        )
    finally:
        docker_env.docker("rm", "-f", other, check=False)
