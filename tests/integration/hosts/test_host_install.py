"""``stackward host install`` onto a second host, and deploys there through a real core.

The second host is a ``dockerd`` in a network namespace that joined the swarm as a (drained)
worker (``tests/engine/second_host.py``); an asyncssh server started inside that namespace
(``tests/support/ssh_host.py``) stands for its sshd. The host shares this machine's file system
and Python: its "system" Python is the test venv's base interpreter, and the dependencies reach
it through ``PYTHONPATH`` in the SSH server's environment (a directory of links to this venv's
packages, stackward itself left out), so the install runs offline with ``--no-deps``.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from core.config import load_config
from protocol.keys import PrivateKey, parse_private_key, parse_public_key
from tests.engine.fixtures import docker
from tests.engine.second_host import SecondHost
from tests.support.core_server import CoreClient, start_core
from tests.support.homelab import COMPOSE_STACK, IMAGE, SWARM_STACK, Repo
from tests.support.processes import (
    REPO,
    KeyPair,
    LoggedProcess,
    stackward_argv,
    toml_value,
    write_toml,
)

pytestmark = [pytest.mark.docker]

AGENT_PORT = 8120
INSTALL_TIMEOUT = 120.0
_LEFT_OUT = ("stackward", "__editable__", "pip", "setuptools", "_distutils_hack", "pkg_resources")

SWARM_ON_WORKER = (
    SWARM_STACK.replace("{probe}", "wget")
    + '    deploy:\n      placement:\n        constraints: ["node.id == {node}"]\n'
)


# --------------------------------------------------------------------------- the SSH host


@dataclass
class SshHost:
    host: SecondHost
    port: int
    host_key: PrivateKey
    identity: Path
    known_hosts: Path
    directory: Path  # --dir on the host
    root: Path  # --root-directory on the host
    process: LoggedProcess

    @property
    def url(self) -> str:
        return f"ssh://root@{self.host.address}:{self.port}"

    @property
    def fingerprint(self) -> str:
        return self.host_key.public_key.fingerprint()

    def install(self, core_key: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        argv = stackward_argv(
            "host", "install", self.url,
            "--name", name,
            "--core-key", str(core_key),
            "--identity", str(self.identity),
            "--dir", str(self.directory),
            "--root-directory", str(self.root),
            "--listen", f"{self.host.address}:{AGENT_PORT}",
            "--python", getattr(sys, "_base_executable", sys.executable),
            "--system-site-packages",
            "--no-deps",
            "--connect-timeout", "10",
            "--timeout", str(INSTALL_TIMEOUT),
            *extra,
        )  # fmt: skip
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT + 30, cwd=REPO
        )

    def supervisor_pid(self) -> int:
        return int((self.directory / "supervise.pid").read_text().strip())

    def stop_agent(self) -> None:
        """Stop the supervised agent the install started (its supervisor, by pid)."""
        try:
            pid = self.supervisor_pid()
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)


def _deps_dir(where: Path) -> Path:
    """Links to this venv's packages but stackward's own: the host Python's "system" packages."""
    where.mkdir(parents=True, exist_ok=True)
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if entry.name.endswith(".pth") or entry.name.startswith(_LEFT_OUT):
            continue
        (where / entry.name).symlink_to(entry)
    return where


def _write_key(path: Path, key: PrivateKey) -> Path:
    path.write_bytes(key.openssh_pem())
    path.chmod(0o600)
    return path


@pytest.fixture
def ssh_host(second_host: SecondHost, tmp_path: Path) -> Iterator[SshHost]:
    work = tmp_path / "ssh"
    work.mkdir()
    host_key = PrivateKey.generate("test-host")
    client_key = PrivateKey.generate("test-client")
    authorized = work / "authorized_keys"
    authorized.write_text(client_key.public_key.openssh_line() + "\n")
    env = {
        "DOCKER_HOST": second_host.docker_host,
        "PYTHONPATH": str(_deps_dir(work / "deps")),
        "HOME": str(work),
    }
    process = LoggedProcess(
        second_host.nsenter(
            sys.executable,
            str(REPO / "tests" / "support" / "ssh_host.py"),
            "--listen",
            second_host.address,
            "--host-key",
            str(_write_key(work / "host_key", host_key)),
            "--authorized-keys",
            str(authorized),
        ),  # fmt: skip
        cwd=work,
        env=env,
    )
    process.start()
    host = SshHost(
        host=second_host,
        port=0,
        host_key=host_key,
        identity=_write_key(work / "id_ed25519", client_key),
        known_hosts=work / "known_hosts",
        directory=tmp_path / "host" / "opt",
        root=tmp_path / "host" / "root",
        process=process,
    )
    try:
        host.port = int(process.wait_for(r"ssh host listening on \S+:(\d+)", 15).group(1))
        host.known_hosts.write_text(
            f"[{second_host.address}]:{host.port} {host_key.public_key.openssh_line()}\n"
        )
        yield host
    finally:
        host.stop_agent()
        process.stop()


def test_an_unknown_or_mismatched_host_key_is_refused(ssh_host: SshHost, tmp_path: Path) -> None:
    core_pub = tmp_path / "core.pub"
    core_pub.write_text(PrivateKey.generate().public_key.openssh_line() + "\n")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    refused = ssh_host.install(core_pub, "h2", "--known-hosts", str(empty))
    assert refused.returncode == 255, refused.stderr
    assert "is not trusted" in refused.stderr and ssh_host.fingerprint in refused.stderr
    assert "--host-key-fingerprint" in refused.stderr
    other = PrivateKey.generate().public_key.fingerprint()
    wrong = ssh_host.install(
        core_pub, "h2", "--known-hosts", str(empty), "--host-key-fingerprint", other
    )
    assert wrong.returncode == 255 and "does not match" in wrong.stderr, wrong.stderr
    changed = tmp_path / "changed_known_hosts"
    impostor = PrivateKey.generate().public_key.openssh_line()
    changed.write_text(f"[{ssh_host.host.address}]:{ssh_host.port} {impostor}\n")
    moved = ssh_host.install(core_pub, "h2", "--known-hosts", str(changed))
    assert moved.returncode == 255 and "no key for this host" in moved.stderr, moved.stderr
    assert not ssh_host.directory.exists()  # nothing reached the host


# ---------------------------------------------------------------------- core and periphery


@dataclass
class Core(CoreClient):
    manager_key: str  # the manager periphery's public key line
    resources: Path  # a directory: main.toml, servers/*.toml

    async def servers(self) -> dict[str, Any]:
        status, body = await self.call("GET", "/api/servers")
        assert status == 200, body
        return {s["name"]: s for s in body["servers"]}

    async def wait_connected(self, name: str, within: float = 30) -> dict[str, Any]:
        """Poll /api/servers (the state lives in the core's pool) until ``name`` is connected."""
        server: dict[str, Any] = {}
        with anyio.move_on_after(within):
            while not (server := (await self.servers()).get(name, {})).get("connected"):  # noqa: ASYNC110
                await anyio.sleep(0.2)
            return server
        status, body = await self.call("GET", "/api/servers")
        raise AssertionError(f"{name} not connected within {within}s: {status} {body}")


@pytest.fixture
async def core(  # type: ignore[no-untyped-def]
    tmp_path: Path, core_keys: KeyPair, periphery_factory
) -> AsyncIterator[Core]:
    token = secrets.token_hex(8)
    resources = tmp_path / "resources"
    (resources / "servers").mkdir(parents=True)
    (resources / "main.toml").write_text("")
    config = load_config(
        write_toml(
            tmp_path / "core.toml",
            {
                "listen": "127.0.0.1:0",
                "data_dir": str(tmp_path / "data"),
                "private_key": str(core_keys.path),
                "api_tokens": [token],
                "resources": [str(resources)],
                "poll_interval": 0,
            },
        )
    )
    async with anyio.create_task_group() as tg:
        port, _ = await start_core(tg, config)
        manager = periphery_factory.make(
            "manager",
            listen="",
            core_address=f"ws://127.0.0.1:{port}",
            server_name="manager",
            reconnect_initial_delay=0.1,
            reconnect_max_delay=0.5,
        )
        await anyio.to_thread.run_sync(manager.start_and_wait)
        yield Core(f"http://127.0.0.1:{port}", token, manager.keys.public.openssh_line(), resources)
        tg.cancel_scope.cancel()


def _server_block(path: Path) -> dict[str, Any]:
    block: dict[str, Any] = tomllib.loads(path.read_text())["server"][0]
    return block


def _resources(p: str, host: str, repo: Repo, manager_key: str) -> str:
    return f"""[[server]]
name = "manager"
[server.config]
public_key = {toml_value(manager_key)}

[[swarm]]
name = "lab"
[swarm.config]
servers = ["manager"]

[[repo]]
name = "lab"
[repo.config]
url = {toml_value(repo.url)}

[[stack]]
name = "{p}-app"
deploy = true
[stack.config]
server = "{host}"
linked_repo = "lab"
run_directory = "stacks/app"
auto_pull = false
[stack.config.health]
timeout = 60

[[stack]]
name = "{p}-spread"
deploy = false
[stack.config]
swarm = "lab"
linked_repo = "lab"
run_directory = "stacks/spread"
[stack.config.health]
timeout = 60
"""


@pytest.mark.anyio
async def test_host_install_puts_an_agent_there_that_the_core_deploys_through(  # type: ignore[no-untyped-def]
    core: Core, ssh_host: SshHost, second_host: SecondHost, core_keys: KeyPair, docker_env, tmp_path
) -> None:
    p = docker_env.prefix
    name = f"{p}-h2"
    server_file = core.resources / "servers" / f"{name}.toml"
    try:
        await _install_deploy_upgrade(
            core, ssh_host, second_host, core_keys, p, name, server_file, tmp_path
        )
    finally:
        ssh_host.stop_agent()
        left = second_host.docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={p}-app", check=False
        )
        if left:
            second_host.docker("rm", "-f", *left.split(), check=False)


async def _install_deploy_upgrade(
    core: Core,
    ssh_host: SshHost,
    second_host: SecondHost,
    core_keys: KeyPair,
    p: str,
    name: str,
    server_file: Path,
    tmp_path: Path,
) -> None:
    # 1. Install: over SSH, host key from known_hosts; the key pair is made on the host.
    done = await anyio.to_thread.run_sync(
        lambda: ssh_host.install(
            core_keys.pub_path,
            name,
            "--known-hosts",
            str(ssh_host.known_hosts),
            "--server-file",
            str(server_file),
        )  # fmt: skip
    )
    assert done.returncode == 0, done.stderr
    assert "supervised" in done.stderr  # no systemd here
    block = _server_block(server_file)
    assert block["name"] == name
    assert block["config"]["address"] == f"ws://{second_host.address}:{AGENT_PORT}/ws"
    assert tomllib.loads(done.stdout)["server"][0] == block  # printed as written
    agent_key = parse_private_key((ssh_host.directory / "periphery.key").read_bytes()).public_key
    assert parse_public_key(block["config"]["public_key"]) == agent_key
    config = tomllib.loads((ssh_host.directory / "periphery.toml").read_text())
    assert config["core_public_keys"] == [core_keys.public.openssh_line()]
    first_supervisor = ssh_host.supervisor_pid()

    # 2. The core pins the key from the resources, dials the agent in the namespace, and
    #    deploys a Compose stack there: its container runs on the second engine only.
    repo = Repo(tmp_path / "repo")
    repo.commit(
        {
            "stacks/app/compose.yaml": COMPOSE_STACK.format(image=IMAGE),
            "stacks/spread/compose.yaml": SWARM_ON_WORKER.format(
                image=IMAGE, node=second_host.node_id
            ),
        }
    )
    (core.resources / "main.toml").write_text(_resources(p, name, repo, core.manager_key))
    applied = await core.sync()
    server = await core.wait_connected(name)
    assert server["key"] == agent_key.fingerprint()
    run = await core.wait_run(applied["run"])
    assert run["status"] == "succeeded", run
    label = f"label=com.docker.compose.project={p}-app"
    assert second_host.docker("ps", "--filter", label, "--format", "{{.State}}") == "running"
    assert docker("ps", "-a", "--filter", label, "--format", "{{.Names}}") == ""

    # 3. A Swarm stack pinned to the worker: a task runs there (the worker is active only now).
    second_host.activate()
    try:
        status, started = await core.call("POST", f"/api/stacks/{p}-spread/deploy")
        assert status == 202, started
        run = await core.wait_run(started["id"])
        assert run["status"] == "succeeded", run
        on_worker = docker(
            "node", "ps", second_host.node_id, "--filter", "desired-state=running",
            "--format", "{{.Name}} {{.CurrentState}}",
        )  # fmt: skip
        assert on_worker.startswith(f"{p}-spread_web.1 Running"), on_worker
        service = f"label=com.docker.swarm.service.name={p}-spread_web"
        assert second_host.docker("ps", "--filter", service, "--format", "{{.State}}") == "running"
    finally:
        second_host.drain()
        docker("stack", "rm", f"{p}-spread", check=False)

    # 4. Again: an upgrade in place. The key stays, the agent restarts, the core reconnects;
    #    this time the host key is trusted by its fingerprint.
    again = await anyio.to_thread.run_sync(
        lambda: ssh_host.install(
            core_keys.pub_path,
            name,
            "--host-key-fingerprint",
            ssh_host.fingerprint,
            "--known-hosts",
            str(tmp_path / "none"),
            "--server-file",
            str(server_file),
        )  # fmt: skip
    )
    assert again.returncode == 0, again.stderr
    assert _server_block(server_file) == block
    assert ssh_host.supervisor_pid() != first_supervisor
    status, redeploy = await core.call("POST", f"/api/stacks/{p}-app/deploy")
    assert status == 202, redeploy
    run = await core.wait_run(redeploy["id"])
    assert run["status"] == "succeeded", run
