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
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.engine.fixtures import IMAGE, Engine, docker
from tests.engine.netns import NetnsDockerd, missing_tools, run

log = logging.getLogger(__name__)

SUBNET = "10.231"


def _free_subnet() -> int:
    taken = run("ip", "-o", "-4", "addr", "show")
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
    engine: NetnsDockerd = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.engine = NetnsDockerd(self.netns, self.workdir)

    @property
    def netns_path(self) -> str:
        return self.engine.netns_path

    @property
    def socket(self) -> Path:
        return self.engine.socket

    @property
    def docker_host(self) -> str:
        return self.engine.docker_host

    def nsenter(self, *argv: str) -> list[str]:
        """An argv that runs ``argv`` inside the host's network namespace."""
        return self.engine.nsenter(*argv)

    def docker(self, *args: str, check: bool = True) -> str:
        """The docker CLI against the second engine."""
        return self.engine.docker(*args, check=check)

    def activate(self) -> None:
        docker("node", "update", "--availability", "active", self.node_id)

    def drain(self) -> None:
        docker("node", "update", "--availability", "drain", self.node_id, check=False)

    # ------------------------------------------------------------------------ set-up

    def start(self) -> None:
        n = int(self.address.split(".")[2])
        peer = f"{self.veth[:-1]}n"
        self.engine.create_namespace()
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", peer)
        run("ip", "link", "set", peer, "netns", self.netns)
        run("ip", "addr", "add", f"{self.root_address}/30", "dev", self.veth)
        run("ip", "link", "set", self.veth, "up")
        run("ip", "-n", self.netns, "addr", "add", f"{SUBNET}.{n}.2/30", "dev", peer)
        run("ip", "-n", self.netns, "link", "set", peer, "up")
        self.engine.start()
        self.engine.load_image(IMAGE)
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
        try:
            if self.node_id:
                self.drain()
                if self.engine.proc is not None and self.engine.proc.poll() is None:
                    self.docker("swarm", "leave", "--force", check=False)
                docker("node", "rm", "--force", self.node_id, check=False)
        except Exception:  # teardown goes on
            log.exception("second host teardown: leaving the swarm failed")
        self.engine.remove()
        if run("ip", "link", "show", self.veth, check=False):
            run("ip", "link", "del", self.veth, check=False)


@pytest.fixture(scope="session")
def second_host(docker_engine: Engine) -> Iterator[SecondHost]:
    reason = missing_tools()
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
