"""``stackward bootstrap`` on real engines: real processes, a real git file:// repository.

On a throwaway engine of the test's own (``throwaway_engine``: a second dockerd in a network
namespace, its swarm inactive): from a left swarm, no periphery, no core and no secrets to a
running core with its first sync done; then the same command again, which changes nothing;
then a secret whose source changed: the new version is created and used by the stack, and the
old one is gone.

On the shared engine (a swarm manager already, which must stay as it is): the same bootstrap,
where the swarm step is the no-op case and the core's image is present, so the core runs as
its stack (a stand-in image answering /healthz), and again.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.bootstrap import processes
from tests.engine.fixtures import DockerTestEnv, file_in_container
from tests.integration.bootstrap.throwaway_engine import ThrowawayEngine
from tests.support.homelab import IMAGE, Repo
from tests.support.processes import make_key, stackward_argv, toml_value, write_toml

pytestmark = [pytest.mark.docker]

BOOTSTRAP_TIMEOUT = 120

INFRA = """version: "3.8"
services:
  web:
    image: {image}
    init: true
    command: ["sh", "-c", "test -s /run/secrets/token && exec httpd -f -p 8080 -h /www"]
    stop_grace_period: 1s
    secrets: [token]
    deploy:
      update_config:
        monitor: 500ms  # the gate waits for the update's monitor period
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 250ms
      timeout: 2s
      retries: 8
secrets:
  token:
    external: true
    name: ${{{var}}}
"""

APP = """version: "3.8"
services:
  web:
    image: {image}
    init: true
    command: ["sh", "-c", "test -s /run/secrets/apikey && exec httpd -f -p 8080 -h /www"]
    stop_grace_period: 1s
    secrets: [apikey]
    deploy:
      update_config:
        monitor: 500ms
secrets:
  apikey:
    external: true
    name: ${{{var}}}
"""


# Stands in for the core's image (deploy/stack.yml needs a real stackward image): answers
# /healthz on the core's port, on the host's network as the real stack does.
FAKE_CORE = """version: "3.8"
services:
  web:
    image: {image}
    init: true
    command:
      - sh
      - -c
      - >-
        mkdir -p /tmp/w && echo ok > /tmp/w/healthz
        && exec httpd -f -p 127.0.0.1:{port} -h /tmp/w
    stop_grace_period: 1s
    networks: [hostnet]
networks:
  hostnet:
    external: true
    name: host
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Lab:
    work: Path
    prefix: str
    config: Path
    core_url: str
    token: str
    secret: str  # the logical name of the swarm secret
    env: dict[str, str]  # DOCKER_HOST of the engine, when not the shared one

    def bootstrap(self, value: str | None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env}
        env.pop("LAB_TOKEN_VALUE", None)
        if value is not None:
            env["LAB_TOKEN_VALUE"] = value
        return subprocess.run(
            stackward_argv("bootstrap", "--config", str(self.config)),
            capture_output=True,
            text=True,
            timeout=BOOTSTRAP_TIMEOUT,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def docker(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **self.env},
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def wait_healthy(self, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                with urllib.request.urlopen(self.core_url + "/healthz", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def wait_run(self, run_id: int, within: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            run: dict[str, Any] = self.api(f"/api/runs/{run_id}")
            if run["status"] != "running" or time.monotonic() > deadline:
                return run
            time.sleep(0.2)

    def stop(self) -> None:
        processes.stop(self.work / "state", "core", "periphery")

    def api(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(
            self.core_url + path,
            method=method,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def secrets(self) -> list[str]:
        names = self.docker("secret", "ls", "--format", "{{.Name}}").split()
        return sorted(n for n in names if n.startswith(self.prefix))

    def service_secrets(self, stack: str = "infra") -> list[str]:
        service = f"{self.prefix}-{stack}_web"
        spec = json.loads(self.docker("service", "inspect", service))[0]["Spec"]
        return [s["SecretName"] for s in spec["TaskTemplate"]["ContainerSpec"]["Secrets"]]

    def secret_in_container(self, stack: str = "infra", secret: str = "token") -> str:
        """The secret as the running (new) task's container reads it."""
        deadline = time.monotonic() + 30
        while True:
            ids = self.docker(
                "ps",
                "-q",
                "--filter",
                f"label=com.docker.swarm.service.name={self.prefix}-{stack}_web",
            ).split()
            path = f"/run/secrets/{secret}"
            pid = "{{.State.Pid}}"
            pids = [self.docker("inspect", "--format", pid, i, check=False) for i in ids]
            values = {file_in_container(pid, path) or "" for pid in pids}
            if len(values) == 1 and "" not in values:  # one task, and it answered
                return values.pop()
            if time.monotonic() > deadline:
                return repr(values)
            time.sleep(0.25)


def versioned(logical: str, value: str) -> str:
    return f"{logical}_{hashlib.sha256(value.encode()).hexdigest()[:8]}"


def make_lab(
    tmp_path: Path, prefix: str, env: dict[str, str], sync: str = "local", core_image: str = ""
) -> Lab:
    """Keys, configs, a repository and a resource file; with ``core_image``, the core runs as
    the stack ``PREFIX-core`` of that image (a stand-in answering /healthz on the core's port)."""
    secret = f"{prefix}-token"
    var = secret.upper().replace("-", "_") + "_SECRET"
    agent_port, core_port = free_port(), free_port()
    app_secret = f"{prefix}-apikey"  # kept by the core: [swarm_secrets] in core.toml
    app_var = app_secret.upper().replace("-", "_") + "_SECRET"
    repo = Repo(tmp_path / "repo")
    repo.commit(
        {
            "stacks/infra/compose.yaml": INFRA.format(image=IMAGE, var=var),
            "stacks/app/compose.yaml": APP.format(image=IMAGE, var=app_var),
            "stacks/core/compose.yaml": FAKE_CORE.format(image=core_image, port=core_port),
        },
        "lab",
    )
    core_key = make_key(tmp_path / "core.key")
    agent_key = make_key(tmp_path / "manager.key")
    token = secrets.token_urlsafe(24)
    resources = tmp_path / "resources.toml"
    resources.write_text(
        "\n".join(
            [
                'tiers = ["infrastructure", "application"]',
                '[[server]]\nname = "manager"\n[server.config]',
                f'address = "ws://127.0.0.1:{agent_port}/ws"',
                f"public_key = {toml_value(agent_key.public.openssh_line())}",
                '[[swarm]]\nname = "lab"\n[swarm.config]\nservers = ["manager"]',
                f'[[repo]]\nname = "lab"\n[repo.config]\nurl = "{repo.url}"',
                f'[[stack]]\nname = "{prefix}-infra"\ndeploy = true\ntier = "infrastructure"',
                '[stack.config]\nswarm = "lab"\nlinked_repo = "lab"',
                'run_directory = "stacks/infra"\n[stack.config.health]\ntimeout = 60',
                f'[[stack]]\nname = "{prefix}-app"\ndeploy = true\ntier = "application"',
                '[stack.config]\nswarm = "lab"\nlinked_repo = "lab"',
                'run_directory = "stacks/app"',
                "[stack.config.health]\ntimeout = 60\n",
                *(
                    [
                        f'[[stack]]\nname = "{prefix}-core"\ntier = "infrastructure"',
                        '[stack.config]\nswarm = "lab"\nlinked_repo = "lab"',
                        'run_directory = "stacks/core"\n',
                    ]
                    if core_image
                    else []
                ),
            ]
        )
    )
    periphery = write_toml(
        tmp_path / "periphery.toml",
        {
            "listen": f"127.0.0.1:{agent_port}",
            "private_key": str(agent_key.path),
            "core_public_keys": [str(core_key.pub_path)],
            "root_directory": str(tmp_path / "agent"),
        },
    )
    core = write_toml(
        tmp_path / "core.toml",
        {
            "listen": f"127.0.0.1:{core_port}",
            "data_dir": str(tmp_path / "core-data"),
            "private_key": str(core_key.path),
            "api_tokens": [token],
            "resources": [str(resources)],
            "poll_interval": 0,
        },
    )
    with core.open("a") as file:
        file.write(
            f'[secrets]\nAPP_KEY = "first-key"\n[swarm_secrets]\n"{app_secret}" = "APP_KEY"\n'
        )
    state = tmp_path / "state"
    config = tmp_path / "bootstrap.toml"
    config.write_text(
        f"""state_dir = "{state}"
server = "manager"
stacks = ["{prefix}-infra"]
stack_timeout = 60

[swarm]
advertise_addr = "127.0.0.1"

[periphery]
config = "{periphery}"
start_timeout = 20

[core]
config = "{core}"
stack = "{f"{prefix}-core" if core_image else ""}"
image = "{core_image}"
start_timeout = 30
sync = "{sync}"
sync_timeout = 90

[[secret]]
name = "{secret}"
env = "LAB_TOKEN_VALUE"
"""
    )
    return Lab(tmp_path, prefix, config, f"http://127.0.0.1:{core_port}", token, secret, env)


@pytest.fixture
def fresh_lab(tmp_path: Path, throwaway_engine: ThrowawayEngine) -> Iterator[Lab]:
    """A lab on an engine of its own, in no swarm (all of it goes with the engine)."""
    assert throwaway_engine.docker("info", "--format", "{{.Swarm.LocalNodeState}}") == "inactive"
    lab = make_lab(
        tmp_path, f"swtest{secrets.token_hex(3)}", {"DOCKER_HOST": throwaway_engine.host}
    )
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def shared_lab(tmp_path: Path, docker_env: DockerTestEnv) -> Iterator[Lab]:
    """A lab on the shared engine: every object carries the test's prefix and is removed."""
    image = f"{docker_env.prefix}-core:1"
    docker_env.docker("tag", docker_env.image, image)
    lab = make_lab(tmp_path, docker_env.prefix, {}, sync="", core_image=image)
    try:
        yield lab
    finally:
        lab.stop()
        docker_env.cleanup()
        docker_env.docker("image", "rm", image, check=False)
        left = lab.secrets()
        if left:
            lab.docker("secret", "rm", *left, check=False)


def steps_of(output: str) -> dict[str, str]:
    """Step → its status, from the progress lines ``  ✓ step: done — ...``."""
    out = {}
    for line in output.splitlines():
        if line.startswith(("  ✓ ", "  = ")) and ": " in line and " — " in line:
            step, rest = line[4:].split(": ", 1)
            out[step] = rest.split(" — ", 1)[0]
    return out


def test_from_a_left_swarm_to_a_synced_core_then_again_then_a_rotated_secret(
    fresh_lab: Lab,
) -> None:
    lab = fresh_lab
    infra, app = f"{lab.prefix}-infra", f"{lab.prefix}-app"
    first_value, second_value = "first-" + secrets.token_hex(8), "second-" + secrets.token_hex(8)
    first_name, second_name = (
        versioned(lab.secret, first_value),
        versioned(lab.secret, second_value),
    )
    key_name = versioned(f"{lab.prefix}-apikey", "first-key")  # kept by the core

    # 0. From nothing (a left swarm, no periphery, no core), but the secret's source is unset:
    #    the step that fails is named, with how to resume.
    failed = lab.bootstrap(None)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert steps_of(failed.stdout) == {"periphery": "done", "swarm": "done"}, failed.stdout
    assert "step 'secrets' failed" in failed.stderr
    assert "the environment variable LAB_TOKEN_VALUE is not set" in failed.stderr
    assert "run the same command again: steps already done are skipped" in failed.stderr
    assert lab.docker("info", "--format", "{{.Swarm.ControlAvailable}}") == "true"
    assert lab.secrets() == []

    # 1. Resumed with the source set: to a running core with its first sync done.
    done = lab.bootstrap(first_value)
    assert done.returncode == 0, done.stdout + done.stderr
    assert first_value not in done.stdout + done.stderr
    steps = steps_of(done.stdout)
    assert steps == {
        "periphery": "unchanged",  # started by the failed run, still answering
        "swarm": "unchanged",  # initialised by the failed run, through the periphery
        "secrets": "done",
        f"stack {infra}": "done",
        "secret users": "unchanged",
        "old secrets": "unchanged",
        "core": "done",
        "first sync": "done",
    }, done.stdout
    assert lab.secrets() == [key_name, first_name]  # the core's own, made by the bootstrap too
    assert lab.service_secrets() == [first_name]
    assert lab.service_secrets("app") == [key_name]
    assert lab.secret_in_container() == first_value
    core_pid = int((lab.work / "state" / "core.pid").read_text())
    assert b"LAB_TOKEN_VALUE" not in Path(f"/proc/{core_pid}/environ").read_bytes()
    assert lab.api("/api/servers")["servers"][0]["connected"] is True
    stacks = {s["name"]: s for s in lab.api("/api/stacks")["stacks"]}
    assert stacks[app]["last_deploy"]["status"] == "healthy"  # the core's first sync did it
    assert stacks[infra]["last_deploy"]["status"] == "healthy"

    # 2. Again, on a healthy system: nothing changes, and it says so.
    again = lab.bootstrap(first_value)
    assert again.returncode == 0, again.stdout + again.stderr
    assert set(steps_of(again.stdout).values()) == {"unchanged"}, again.stdout
    assert "nothing to do, every step unchanged" in again.stdout
    assert lab.secrets() == [key_name, first_name]

    # 3. The secret's source changed: a new version, the stack moved to it, the old one gone.
    rotated = lab.bootstrap(second_value)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    steps = steps_of(rotated.stdout)
    assert steps["secrets"] == "done"
    assert steps[f"stack {infra}"] == "done"
    assert steps["old secrets"] == "done"
    assert f"removed {first_name}" in rotated.stdout
    assert lab.secrets() == [key_name, second_name]
    assert lab.service_secrets() == [second_name]
    assert lab.secret_in_container() == second_value

    # 4. A secret the core keeps ([swarm_secrets] from its [secrets]) changed (the core
    #    restarted with it): once the manager's periphery is back, the core makes the new
    #    version, redeploys the stack that uses the old one, and the old one goes.
    core_toml = lab.work / "core.toml"
    core_toml.write_text(core_toml.read_text().replace('"first-key"', '"second-key"'))
    state = lab.work / "state"
    processes.stop(state, "core")
    processes.start(state, "core", processes.stackward_argv("core", "--config", str(core_toml)))
    lab.wait_healthy()
    new_key = versioned(f"{lab.prefix}-apikey", "second-key")
    deadline = time.monotonic() + 90
    while lab.secrets() != [new_key, second_name] and time.monotonic() < deadline:
        time.sleep(0.5)
    last = {s["name"]: s for s in lab.api("/api/stacks")["stacks"]}[app]["last_deploy"]
    assert last["status"] == "healthy", last
    assert lab.service_secrets("app") == [new_key]
    assert lab.secret_in_container("app", "apikey") == "second-key"
    assert lab.secrets() == [new_key, second_name]


def test_on_a_manager_the_swarm_is_left_alone_and_the_core_runs_as_its_stack(
    shared_lab: Lab,
) -> None:
    lab = shared_lab
    node = lab.docker("info", "--format", "{{.Swarm.NodeID}}")
    value = "shared-" + secrets.token_hex(8)
    done = lab.bootstrap(value)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = steps_of(done.stdout)
    assert steps["swarm"] == "unchanged", done.stdout
    assert f"a swarm manager already (node {node})" in done.stdout
    assert steps[f"stack {lab.prefix}-infra"] == "done", done.stdout
    assert steps["core"] == "done", done.stdout
    assert f"deployed as the stack {lab.prefix}-core" in done.stdout  # its image is here
    assert not (lab.work / "state" / "core.pid").exists()  # no process of ours
    lab.wait_healthy()
    assert lab.service_secrets() == [versioned(lab.secret, value)]
    assert lab.secret_in_container() == value
    again = lab.bootstrap(value)
    assert again.returncode == 0, again.stdout + again.stderr
    assert set(steps_of(again.stdout).values()) == {"unchanged"}, again.stdout
    assert lab.docker("info", "--format", "{{.Swarm.NodeID}}") == node
