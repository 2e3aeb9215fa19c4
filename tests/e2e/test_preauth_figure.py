"""Issue 12's figure for what an unauthenticated client can hold, on real processes.

A real core and a real agent (it listens, and dials the core). A flood in its own process keeps
300 idle TCP sockets and 60 connections sending 16 MiB websocket frames, again and again,
against both the agent's ``/ws`` and the core's ``/ws/periphery``. Meanwhile a real
``stackward exec`` connects to the agent in under a second, a periphery dials into the core in
under a second, and the agent's and the core's resident memory stay under twice their idle
size; the agent's own channel to the core stays up. Neither logs a traceback meanwhile.

And descriptor exhaustion: an agent under ``RLIMIT_NOFILE`` 64 with hundreds of connections
arriving logs "out of system resource" once per interval (one line, no traceback), then serves
a real ``exec`` once the sockets are gone.
"""

from __future__ import annotations

import json
import re
import resource
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import anyio
import pytest

from core.client import CoreClient
from protocol.connect import dial
from protocol.messages import Role
from tests.support.processes import (
    REPO,
    CoreProcess,
    KeyPair,
    Periphery,
    make_key,
    stackward_argv,
    toml_value,
)

IDLE, FRAMES = 300, 60


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class PeakRss:
    """The highest resident size of some processes, sampled every 20 ms in a thread."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mib(pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def exec_on(agent: Periphery, core_keys: KeyPair, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *stackward_argv("--log-level", "INFO", "exec"),
            "--periphery",
            agent.url,
            "--key",
            str(core_keys.path),
            "--periphery-key",
            str(agent.keys.pub_path),
            "--connect-timeout",
            "1",
            "--",
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def connected_in(done: subprocess.CompletedProcess[str]) -> float:
    found = re.search(r"connected to \S+ in ([0-9.]+)s", done.stderr)
    assert found, done.stderr
    return float(found.group(1))


@dataclass
class Lab:
    core: CoreProcess
    agent: Periphery
    core_keys: KeyPair
    probe: KeyPair


@pytest.fixture
def lab(tmp_path: Path, core_keys: KeyPair) -> Iterator[Lab]:
    core = CoreProcess(tmp_path / "core", core_keys, secrets.token_hex(12), reconcile="manual")
    agent = Periphery(
        tmp_path / "agent",
        core_keys,
        core_address=f"ws://127.0.0.1:{core.port}",
        server_name="edge",
        reconnect_initial_delay=0.1,
        reconnect_max_delay=0.5,
    )
    probe = make_key(tmp_path / "probe.key")
    core.resources.write_text(
        "".join(
            f'[[server]]\nname = "{name}"\n[server.config]\npublic_key = '
            f"{toml_value(key.openssh_line())}\n\n"
            for name, key in (("edge", agent.keys.public), ("probe", probe.public))
        )
    )
    core.start_and_wait()
    try:
        agent.start_and_wait()

        async def apply() -> None:
            async with CoreClient(core.url, core.token) as client:
                await client.sync()

        anyio.run(apply)
        agent.wait_for("connected to the core", timeout=20)
        yield Lab(core, agent, core_keys, probe)
    finally:
        agent.stop()
        core.stop()


async def probe_dials_in(lab: Lab) -> float:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        conn = await dial(
            session,
            f"ws://127.0.0.1:{lab.core.port}/ws/periphery",
            private_key=lab.probe.key,
            role=Role.PERIPHERY,
            trusted_keys=[lab.core_keys.public],
            name="probe",
        )
        took = time.monotonic() - started
        await conn.ws.close()
    return took


def test_300_idle_sockets_and_60_16mib_frames_against_agent_and_core(lab: Lab) -> None:
    baseline = exec_on(lab.agent, lab.core_keys, "echo", "ok")
    assert baseline.returncode == 0, baseline.stderr
    time.sleep(1.0)
    pids = {"agent": lab.agent.proc.pid, "core": lab.core.proc.pid}  # type: ignore[union-attr]
    idle = {name: rss_mib(pid) for name, pid in pids.items()}
    agent_port = lab.agent.url.split("//")[1].split("/")[0]
    agent_from, core_from = len(lab.agent.lines), len(lab.core.lines)
    flood = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.flood",
            f"{agent_port}/ws",
            f"127.0.0.1:{lab.core.port}/ws/periphery",
            "--idle",
            str(IDLE),
            "--frames",
            str(FRAMES),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert flood.stdout is not None
    try:
        with PeakRss(pids) as rss:
            assert flood.stdout.readline().strip() == "ready"
            time.sleep(1.0)  # the flood at full pressure
            runs = [exec_on(lab.agent, lab.core_keys, "echo", "ok") for _ in range(3)]
            dial_ins = [anyio.run(probe_dials_in, lab) for _ in range(3)]
    finally:
        flood.terminate()
        out, _ = flood.communicate(timeout=30)
    counts = [json.loads(line) for line in out.splitlines()]
    for done in runs:
        assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
    times = [connected_in(done) for done in runs]
    assert max(times) < 1.0, f"exec connected in {times}"
    assert max(dial_ins) < 1.0, f"the periphery dialed in in {dial_ins}"
    for name in pids:
        assert rss.peak[name] < 2 * idle[name], (name, idle[name], rss.peak[name])
    for target in counts:  # the flood was real: evicted sockets, frames refused and re-sent
        assert target["idle_closed_by_server"] > 0 and target["frames_refused"] > FRAMES, target
    lab.agent.wait_for("authentication failed from 127.0.0.1", timeout=1)
    during = lab.agent.lines[agent_from:] + lab.core.lines[core_from:]
    assert not [line for line in during if "Traceback" in line], "\n".join(during[-40:])
    # the agent's own channel to the core lived through it
    assert not any("disconnected" in line and "edge" in line for line in lab.core.lines)
    print(
        f"idle RSS {idle}, peak {rss.peak}; exec connected in {times}, dial-in {dial_ins};"
        f" flood {counts}"
    )


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_descriptor_exhaustion_is_logged_once_per_interval(
    core_keys: KeyPair, tmp_path: Path
) -> None:
    agent = Periphery(
        tmp_path / "agent",
        core_keys,
        unauthenticated_per_address=1000,  # the caps would keep it under the limit otherwise
        unauthenticated_total=1000,
    )
    agent.preexec = _low_descriptor_limit
    agent.start_and_wait()
    try:
        host, port = agent.url.split("//")[1].split("/")[0].rsplit(":", 1)
        held = []
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:  # keep arriving: asyncio retries accept each second
            for _ in range(50):
                sock = socket.socket()
                sock.setblocking(False)
                try:
                    sock.connect((host, int(port)))
                except BlockingIOError:
                    pass
                held.append(sock)
            time.sleep(0.1)
        agent.wait_for("out of system resource", timeout=5)
        lines = [line for line in agent.lines if "out of system resource" in line]
        assert len(lines) == 1, lines  # one per 10 s interval, not one per failed accept
        assert not any(line.startswith(("Traceback", "OSError")) for line in agent.lines)
        for sock in held:
            sock.close()
        time.sleep(DEADLINE_AND_RETRY)
        done = exec_on(agent, core_keys, "echo", "back")
        assert (done.returncode, done.stdout) == (0, "back\n"), done.stderr + "\n".join(
            agent.lines[-20:]
        )
    finally:
        agent.stop()


DEADLINE_AND_RETRY = 1.5  # asyncio waits 1 s before accepting again after EMFILE
