"""A second Docker host for the tests: a ``dockerd`` in a network namespace, a swarm worker.

``second_host`` (session fixture, needs ``docker_engine``):

1. a network namespace ``swhost-<hex>`` and a veth pair: ``10.231.N.1/30`` on the root side,
   ``10.231.N.2/30`` inside (N random, skipped when taken);
2. ``dockerd`` started with ``nsenter --net=/var/run/netns/NAME`` (not ``ip netns exec``, which
   remounts /sys and hides the cgroups), with its own ``--data-root``, ``--exec-root``,
   ``unix://`` socket and pidfile, ``--bridge none --iptables=false``; the test image loaded;
3. ``docker swarm join --availability drain`` to the shared swarm through the root side's veth
   address (the manager listens on 0.0.0.0:2377).

The worker stays **drained**: other tests' services must never land on it. A test that wants
a task there calls ``activate()`` just before, ``drain()`` right after, and pins its service
with ``node.id == second_host.node_id``.

Teardown: drain, ``swarm leave --force`` on the worker, ``docker node rm --force`` on the
manager, stop the dockerd, delete the namespace, the veth and the data directory.

Skips (with the reason) when not root, or ``ip``, ``nsenter`` or ``dockerd`` is missing.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.engine.fixtures import IMAGE, Engine, docker

log = logging.getLogger(__name__)

SUBNET = "10.231"
ENGINE_DEADLINE = 30.0
STOP_DEADLINE = 20.0
COMMAND_TIMEOUT = 60.0


def _run(*argv: str, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def _free_subnet() -> int:
    taken = _run("ip", "-o", "-4", "addr", "show")
    candidates = list(range(16, 250))
    random.shuffle(candidates)
    for n in candidates:
        if f" {SUBNET}.{n}." not in taken:
            return n
    raise AssertionError(f"no free {SUBNET}.N.0/30 subnet")


@dataclass
class SecondHost:
    """The second host: its namespace, addresses, engine socket and swarm node."""

    netns: str
    workdir: Path
    root_address: str  # the root namespace's end of the veth
    address: str  # the second host's address (inside the namespace)
    veth: str  # root side
    node_id: str = ""
    dockerd: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"

    @property
    def socket(self) -> Path:
        return self.workdir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def nsenter(self, *argv: str) -> list[str]:
        """An argv that runs ``argv`` inside the host's network namespace."""
        return ["nsenter", f"--net={self.netns_path}", *argv]

    def docker(self, *args: str, check: bool = True) -> str:
        """The docker CLI against the second engine."""
        return _run("docker", "-H", self.docker_host, *args, check=check)

    def activate(self) -> None:
        docker("node", "update", "--availability", "active", self.node_id)

    def drain(self) -> None:
        docker("node", "update", "--availability", "drain", self.node_id, check=False)

    # ------------------------------------------------------------------------ set-up

    def start(self) -> None:
        n = int(self.address.split(".")[2])
        peer = f"{self.veth[:-1]}n"
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", self.netns)
        _run("ip", "addr", "add", f"{self.root_address}/30", "dev", self.veth)
        _run("ip", "link", "set", self.veth, "up")
        inside = ["ip", "-n", self.netns]
        _run(*inside, "addr", "add", f"{SUBNET}.{n}.2/30", "dev", peer)
        _run(*inside, "link", "set", peer, "up")
        _run(*inside, "link", "set", "lo", "up")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / "dockerd.log", "wb") as log_file:
            self.dockerd = subprocess.Popen(
                self.nsenter(
                    "dockerd",
                    "--data-root",
                    str(self.workdir / "data"),
                    "--exec-root",
                    str(self.workdir / "exec"),
                    "--pidfile",
                    str(self.workdir / "docker.pid"),
                    "-H",
                    self.docker_host,
                    "--bridge",
                    "none",
                    "--iptables=false",
                ),  # fmt: skip
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + ENGINE_DEADLINE
        while self.docker("info", "--format", "{{.ServerVersion}}", check=False) == "":
            if self.dockerd.poll() is not None or time.monotonic() > deadline:
                tail = (self.workdir / "dockerd.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"the second dockerd did not answer:\n{tail}")
            time.sleep(0.2)
        saved = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
        assert saved.stdout is not None
        loaded = subprocess.run(
            ["docker", "-H", self.docker_host, "load", "-q"],
            stdin=saved.stdout,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
        )
        saved.stdout.close()
        saved.wait(COMMAND_TIMEOUT)
        assert loaded.returncode == 0 and saved.returncode == 0, loaded.stderr
        token = docker("swarm", "join-token", "-q", "worker")
        self.docker(
            "swarm", "join", "--token", token, "--availability", "drain",
            "--advertise-addr", self.address, "--listen-addr", f"{self.address}:2377",
            f"{self.root_address}:2377",
        )  # fmt: skip
        self.node_id = self.docker("info", "--format", "{{.Swarm.NodeID}}")
        assert self.node_id, "the second engine joined no swarm"

    # ---------------------------------------------------------------------- teardown

    def stop(self) -> None:
        """Undo everything ``start`` did, as far as it got; never raises."""
        steps = [self._leave, self._stop_dockerd, self._remove_network, self._remove_files]
        for step in steps:
            try:
                step()
            except Exception:  # teardown goes on: each step cleans what it can
                log.exception("second host teardown: %s failed", step.__name__)

    def _leave(self) -> None:
        if self.node_id:
            self.drain()
            if self.dockerd is not None and self.dockerd.poll() is None:
                self.docker("swarm", "leave", "--force", check=False)
            docker("node", "rm", "--force", self.node_id, check=False)

    def _stop_dockerd(self) -> None:
        if self.dockerd is None or self.dockerd.poll() is not None:
            return
        self.dockerd.send_signal(signal.SIGTERM)
        try:
            self.dockerd.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(self.dockerd.pid, signal.SIGKILL)
            self.dockerd.wait(STOP_DEADLINE)

    def _remove_network(self) -> None:
        _run("ip", "netns", "del", self.netns, check=False)
        if _run("ip", "link", "show", self.veth, check=False):
            _run("ip", "link", "del", self.veth, check=False)

    def _remove_files(self) -> None:
        mounts = Path("/proc/mounts").read_text()
        for line in mounts.splitlines():
            target = line.split()[1]
            if target.startswith(str(self.workdir)):
                _run("umount", "-l", target, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "a second Docker host needs root (network namespaces, a second dockerd)"
    for tool in ("ip", "nsenter", "dockerd"):
        if shutil.which(tool) is None:
            return f"a second Docker host needs {tool!r}, which is missing"
    return None


@pytest.fixture(scope="session")
def second_host(docker_engine: Engine) -> Iterator[SecondHost]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if docker("info", "--format", "{{.Swarm.ControlAvailable}}") != "true":
        pytest.skip("the engine is not a swarm manager")
    tag = secrets.token_hex(2)
    n = _free_subnet()
    host = SecondHost(
        netns=f"swhost-{tag}",
        workdir=Path(f"/tmp/swhost-{tag}"),
        root_address=f"{SUBNET}.{n}.1",
        address=f"{SUBNET}.{n}.2",
        veth=f"swh{tag}r",
    )
    try:
        host.start()
        yield host
    finally:
        host.stop()
