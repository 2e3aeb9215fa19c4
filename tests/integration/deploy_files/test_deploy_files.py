"""deploy/: the files stackward deploys itself with, checked by the engine's own config commands
(and the example configs by stackward's own loaders)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from functools import partial
from pathlib import Path

import anyio
import msgspec
import pytest
import yaml

from core.bootstrap.config import load_bootstrap_config
from core.config import CoreConfig
from periphery.config import PeripheryConfig
from periphery.ops import dockercli
from tests.engine.fixtures import DockerTestEnv, Engine

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
VERSIONS = {
    "STACKWARD_CORE_KEY_SECRET": "stackward_core_key_0a1b2c3d",
    "STACKWARD_API_TOKENS_SECRET": "stackward_api_tokens_4e5f6a7b",
}


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=DEPLOY,
        env={**os.environ, **(env or {})},
    )


def _has_stack_config() -> bool:
    # `docker stack config --help` exits 0 on 20.10 too (it prints `docker stack`'s help)
    caps = anyio.run(partial(dockercli.probe, again=True))
    return caps.has(dockercli.STACK_CONFIG)


@pytest.mark.docker
def test_the_core_stack_file_passes_docker_stack_config(docker_engine: Engine) -> None:
    """``docker stack config`` where the CLI has it (23.0 and newer); Debian 12's 20.10 CLI has
    not, and there the same file, with the same variables, goes through ``docker-compose config``
    (v1 reads the version 3.8 format, ``deploy`` and secret ``name`` included)."""
    if _has_stack_config():
        argv = ["docker", "stack", "config", "-c", "stack.yml"]
    elif shutil.which("docker-compose"):
        argv = ["docker-compose", "-f", "stack.yml", "config"]
    else:
        pytest.skip("neither `docker stack config` (CLI 23+) nor docker-compose is installed")
    done = run(argv, VERSIONS)
    assert done.returncode == 0, done.stderr
    stack = yaml.safe_load(done.stdout)
    core = stack["services"]["core"]
    assert {s["source"] for s in core["secrets"]} == {"stackward_core_key", "stackward_api_tokens"}
    assert stack["secrets"]["stackward_core_key"]["name"] == "stackward_core_key_0a1b2c3d"
    assert stack["secrets"]["stackward_api_tokens"]["external"] is True
    # stack config gives long-form volumes; docker-compose v1 keeps the short "SRC:DST:rw"
    sources = [v["source"] if isinstance(v, dict) else v.split(":")[0] for v in core["volumes"]]
    assert "stackward_data" in sources
    assert "healthz" in " ".join(core["healthcheck"]["test"])
    assert core["deploy"]["replicas"] == 1


@pytest.mark.docker
def test_the_periphery_compose_file_passes_compose_config(docker_engine: Engine) -> None:
    compose = (
        ["docker", "compose"]
        if run(["docker", "compose", "version"]).returncode == 0
        else ["docker-compose"]
    )
    if shutil.which(compose[0]) is None:
        pytest.skip("neither docker compose nor docker-compose is installed")
    done = run([*compose, "-f", "compose.yml", "config"])
    assert done.returncode == 0, done.stderr
    service = yaml.safe_load(done.stdout)["services"]["periphery"]
    mounts = " ".join(str(v) for v in service["volumes"])
    assert "/var/run/docker.sock" in mounts
    assert service["command"][:1] == ["periphery"]


def test_the_example_configs_load() -> None:
    core = msgspec.convert(tomllib.loads((DEPLOY / "core.toml").read_text()), CoreConfig)
    inside = msgspec.convert(tomllib.loads((DEPLOY / "core.stack.toml").read_text()), CoreConfig)
    assert inside.private_key == "/run/secrets/stackward_core_key"
    assert inside.api_tokens_file == "/run/secrets/stackward_api_tokens"
    assert (inside.listen, inside.data_dir) == (core.listen, core.data_dir)  # shared state
    agent = msgspec.convert(tomllib.loads((DEPLOY / "periphery.toml").read_text()), PeripheryConfig)
    assert agent.listen == "0.0.0.0:8120"
    boot = load_bootstrap_config(DEPLOY / "bootstrap.toml")
    assert [s.name for s in boot.secret][:2] == ["stackward_core_key", "stackward_api_tokens"]
    assert boot.secret[0].file == core.private_key  # the secret's source is the host's key
    assert boot.secret[1].file == core.api_tokens_file
    assert boot.core.stack == "stackward"


def test_the_systemd_unit_runs_the_periphery() -> None:
    unit = (DEPLOY / "stackward-periphery.service").read_text()
    assert (
        "ExecStart=/usr/local/bin/stackward periphery --config /etc/stackward/periphery.toml"
        in unit
    )
    if shutil.which("systemd-analyze") is None:
        return
    done = run(
        ["systemd-analyze", "verify", "--man=no", str(DEPLOY / "stackward-periphery.service")]
    )
    # verify also complains about an ExecStart binary missing here; syntax errors are what count
    problems = [
        line
        for line in done.stderr.splitlines()
        if "stackward-periphery.service" in line
        and "Command /usr/local/bin/stackward is not executable" not in line
        and "docker.service" not in line
    ]
    assert problems == [], done.stderr


@pytest.mark.docker
def test_the_image_builds_when_its_base_images_are_here(docker_env: DockerTestEnv) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    bases = [
        line.split("=", 1)[1]
        for line in dockerfile.splitlines()
        if line.startswith("ARG ") and line.endswith(("slim-bookworm", "-cli"))
    ]
    missing = [b for b in bases if run(["docker", "image", "inspect", b]).returncode != 0]
    if missing:
        pytest.skip(f"base images not in the engine (nothing can be pulled here): {missing}")
    tag = f"{docker_env.prefix}-stackward:test"
    try:
        done = subprocess.run(
            ["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(REPO)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        out = docker_env.docker("run", "--rm", "--entrypoint", "docker", tag, "--version")
        assert out.startswith("Docker version")
        assert "usage: stackward" in docker_env.docker("run", "--rm", tag, "--help")
    finally:
        docker_env.docker("image", "rm", "-f", tag, check=False)
