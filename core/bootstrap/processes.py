"""Supervised background processes for the bootstrap, where there is no systemd.

``start`` runs ``stackward supervise -- ARGV`` in a session of its own (it outlives the
bootstrap), its output appended to ``STATE/NAME.log`` and its pid in ``STATE/NAME.pid``; the
supervisor restarts ``ARGV`` when it exits, and stops it on SIGTERM. Blocking: call from a
worker thread.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

SYSTEMCTL_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def log_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.log"


def pid_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.pid"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(state_dir: Path, name: str) -> int | None:
    """The pid of the supervisor started for ``name``, when it still runs."""
    try:
        pid = int(pid_file(state_dir, name).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def stackward_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "core.cli", *args]


def start(state_dir: Path, name: str, argv: list[str], drop_env: Iterable[str] = ()) -> int:
    """Start ``argv`` under a supervisor; the supervisor's pid. ``drop_env``: variables it
    must not inherit (the bootstrap's secret sources)."""
    env = {k: v for k, v in os.environ.items() if k not in set(drop_env)}
    state_dir.mkdir(parents=True, exist_ok=True)
    with log_file(state_dir, name).open("ab") as log:
        proc = subprocess.Popen(
            stackward_argv("supervise", "--name", name, "--", *argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
    pid_file(state_dir, name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop(state_dir: Path, *names: str, timeout: float = STOP_TIMEOUT) -> list[str]:
    """SIGTERM to the supervisors of ``names`` at once (each stops its child), then wait for
    them; the names that were running."""
    pids = {name: running(state_dir, name) for name in names}
    stopped = {name: pid for name, pid in pids.items() if pid is not None}
    for pid in stopped.values():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for name, pid in stopped.items():
        while alive(pid) and time.monotonic() < deadline:
            try:  # our own child when started in this process; reap it
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
        pid_file(state_dir, name).unlink(missing_ok=True)
    return list(stopped)


def tail(state_dir: Path, name: str, lines: int = 15) -> str:
    try:
        text = log_file(state_dir, name).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def systemd_runs() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def systemctl_start(unit: str) -> str:
    """``systemctl start UNIT``; "" on success, else the reason."""
    try:
        done = subprocess.run(
            ["systemctl", "start", unit],
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"systemctl start {unit}: {exc}"
    if done.returncode != 0:
        return f"systemctl start {unit}: {done.stderr.strip() or done.returncode}"
    return ""
