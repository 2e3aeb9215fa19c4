"""``stackward supervise``: the child is restarted when it exits, and SIGTERM stops both."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.support.processes import stackward_argv


def test_a_child_that_exits_is_restarted_and_sigterm_stops_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    child = f"echo $$ >> {runs}; sleep 0.2; exit 3"
    proc = subprocess.Popen(
        stackward_argv("supervise", "--name", "flaky", "--", "sh", "-c", child),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if runs.exists() and len(runs.read_text().split()) >= 2:
                break
            time.sleep(0.05)
        pids = runs.read_text().split()
        assert len(pids) >= 2 and len(set(pids)) == len(pids)  # a new process each time
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stdout is not None
    log = proc.stdout.read()
    assert "flaky exited with 3; restarting in 1s" in log
    assert "flaky stopped" in log


def test_a_long_running_child_gets_sigterm(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    up = tmp_path / "up"
    child = f"trap 'touch {marker}; exit 0' TERM; echo up > {up}; while :; do sleep 0.1; done"
    proc = subprocess.Popen(stackward_argv("supervise", "--", "sh", "-c", child))
    try:
        deadline = time.monotonic() + 10
        while not up.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert marker.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_a_command_it_is_a_usage_error() -> None:
    done = subprocess.run(stackward_argv("supervise"), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "give the command after --" in done.stderr
