"""A throwaway Docker engine of the test's own, in a network namespace (a plugin module).

``throwaway_engine`` starts a second ``dockerd`` (its own data and exec roots under a short
directory in /tmp, a unix socket there, ``--bridge none --iptables=false``) inside a new
network namespace entered with ``nsenter``, loads the test image into it from the shared
engine, and yields its ``DOCKER_HOST``. Its swarm starts inactive, and whatever the test does
to it (``docker swarm init``, secrets, stacks) touches nobody else. At teardown the engine,
every process left in the namespace, its mounts, its directory and the namespace go.

Skips, with the reason, where it cannot be made (not root, no ``ip``/``nsenter``/``dockerd``,
or the engine does not come up).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.fixtures import Engine

START_DEADLINE = 30.0
STOP_DEADLINE = 20.0


@dataclass(frozen=True)
class ThrowawayEngine:
    host: str  # DOCKER_HOST
    root: Path
    image: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def answers(self) -> bool:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=10,
            env=self.env,
            check=False,
        )
        return done.returncode == 0

    def docker(self, *args: str, check: bool = True, stdin: bytes | None = None) -> str:
        done = subprocess.run(
            ["docker", *args],
            capture_output=True,
            input=stdin,
            timeout=60,
            env=self.env,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr.decode().strip()}")
        return done.stdout.decode().strip()


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "a throwaway engine needs root"
    for tool in ("ip", "nsenter", "dockerd", "docker"):
        if shutil.which(tool) is None:
            return f"a throwaway engine needs {tool}"
    return None


def _run(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=30, check=False)


@pytest.fixture
def throwaway_engine(docker_engine: Engine) -> Iterator[ThrowawayEngine]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    name = f"swb{secrets.token_hex(3)}"
    root = Path("/tmp") / name  # short: containerd's socket paths must stay under 108 bytes
    root.mkdir()
    netns_made = _run("ip", "netns", "add", name).returncode == 0
    proc: subprocess.Popen[bytes] | None = None
    try:
        if not netns_made:
            pytest.skip("cannot make a network namespace (ip netns add)")
        _run("ip", "-n", name, "link", "set", "lo", "up")
        sock = root / "docker.sock"
        with (root / "dockerd.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/var/run/netns/{name}",
                    "dockerd",
                    "--data-root",
                    str(root / "data"),
                    "--exec-root",
                    str(root / "exec"),
                    "--pidfile",
                    str(root / "docker.pid"),
                    "-H",
                    f"unix://{sock}",
                    "--bridge",
                    "none",
                    "--iptables=false",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        engine = ThrowawayEngine(f"unix://{sock}", root, docker_engine.image)
        deadline = time.monotonic() + START_DEADLINE
        while not engine.answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "dockerd.log").read_text(errors="replace")[-2000:]
                pytest.skip(f"the throwaway engine did not come up:\n{tail}")
            time.sleep(0.2)
        image = subprocess.run(
            ["docker", "save", docker_engine.image], capture_output=True, timeout=60, check=True
        ).stdout
        engine.docker("load", stdin=image)
        yield engine
    finally:
        _teardown(name, root, proc)


def _teardown(name: str, root: Path, proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        subprocess.run(
            ["docker", "-H", f"unix://{root / 'docker.sock'}", "swarm", "leave", "--force"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    pids = _run("ip", "netns", "pids", name).stdout.split()
    for pid in pids:  # shims and containers the engine left behind
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if str(root) in line.split()[1]]
    for point in sorted(points, reverse=True):
        _run("umount", "-l", point)
    _run("ip", "netns", "del", name)
    shutil.rmtree(root, ignore_errors=True)
