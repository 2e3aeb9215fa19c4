"""A ``dockerd`` of the test's own inside a network namespace (DESIGN.md, the Docker engine in
tests): the part the second host and the throwaway engine share.

``NetnsDockerd(name, workdir)``: ``create_namespace()`` makes the namespace (loopback up);
the caller may wire it (a veth pair) before ``start()``, which runs ``dockerd`` through
``nsenter --net=/var/run/netns/NAME`` (not ``ip netns exec``, which remounts /sys and hides the
cgroups) with its own data and exec roots, a unix socket and a pidfile under ``workdir``,
``--bridge none --iptables=false``, and waits until it answers. ``load_image`` copies an image
from the shared engine. ``remove()`` undoes everything as far as it got and never raises: the
engine, every process left in the namespace (shims, containers), mounts under ``workdir``, the
namespace and ``workdir``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

START_DEADLINE = 30.0
STOP_DEADLINE = 20.0
COMMAND_TIMEOUT = 60.0
TOOLS = ("ip", "nsenter", "dockerd", "docker")


def missing_tools() -> str | None:
    """Why a namespaced engine cannot be made here, or None."""
    if os.geteuid() != 0:
        return "a Docker engine in a network namespace needs root"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"a Docker engine in a network namespace needs {tool!r}, which is missing"
    return None


def run(*argv: str, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


class EngineDidNotStart(AssertionError):
    pass


class NetnsDockerd:
    def __init__(self, name: str, workdir: Path) -> None:
        self.netns = name
        self.workdir = workdir  # short: containerd's socket paths must stay under 108 bytes
        self.proc: subprocess.Popen[bytes] | None = None
        self._namespace = False

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
        """An argv that runs ``argv`` inside the namespace."""
        return ["nsenter", f"--net={self.netns_path}", *argv]

    def docker(self, *args: str, check: bool = True, stdin: bytes | None = None) -> str:
        """The docker CLI against this engine."""
        done = subprocess.run(
            ["docker", "-H", self.docker_host, *args],
            capture_output=True,
            input=stdin,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr.decode().strip()}")
        return done.stdout.decode().strip()

    def answers(self) -> bool:
        return self.docker("version", "--format", "{{.Server.Version}}", check=False) != ""

    # ---------------------------------------------------------------------------- set-up

    def create_namespace(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        run("ip", "netns", "add", self.netns)
        self._namespace = True
        run("ip", "-n", self.netns, "link", "set", "lo", "up")

    def start(self) -> None:
        with (self.workdir / "dockerd.log").open("wb") as log_file:
            self.proc = subprocess.Popen(
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
        deadline = time.monotonic() + START_DEADLINE
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.workdir / "dockerd.log").read_text(errors="replace")[-2000:]
                raise EngineDidNotStart(f"the namespaced dockerd did not answer:\n{tail}")
            time.sleep(0.2)

    def load_image(self, image: str) -> None:
        saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
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

    # -------------------------------------------------------------------------- teardown

    def remove(self) -> None:
        for step in (self._stop, self._kill_leftovers, self._unmount, self._delete):
            try:
                step()
            except Exception:  # teardown goes on: each step cleans what it can
                log.exception("namespaced engine %s: %s failed", self.netns, step.__name__)

    def _stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_DEADLINE)

    def _kill_leftovers(self) -> None:
        if not self._namespace:
            return
        for pid in run("ip", "netns", "pids", self.netns, check=False).split():
            try:  # shims and containers the engine left behind
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass

    def _unmount(self) -> None:
        with open("/proc/mounts") as mounts:
            points = [
                line.split()[1] for line in mounts if line.split()[1].startswith(str(self.workdir))
            ]
        for point in sorted(points, reverse=True):
            run("umount", "-l", point, check=False)

    def _delete(self) -> None:
        if self._namespace:
            run("ip", "netns", "del", self.netns, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
