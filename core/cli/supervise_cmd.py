"""``stackward supervise [--name NAME] -- ARGV...``: keep ``ARGV`` running.

What the bootstrap runs the periphery and the core under where there is no systemd: the child
is restarted when it exits (after 1 s, doubling up to 30 s; back to 1 s after a minute of
running), and SIGTERM or SIGINT stops it (SIGTERM, then SIGKILL after 10 s) and the supervisor.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
STABLE_AFTER = 60.0
STOP_GRACE = 10.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "supervise",
        help="keep a command running (restart it when it exits)",
        description="Run ARGV, restart it when it exits, stop it on SIGTERM.",
    )
    p.add_argument("--name", default="child", help="what to call the child in the log")
    p.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("stackward supervise: give the command after --", file=sys.stderr)
        return 2
    stopping = threading.Event()
    child: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        if child and child[0].poll() is None:
            child[0].send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    delay = FIRST_DELAY
    while not stopping.is_set():
        started = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        except OSError as exc:
            log.error("%s: cannot start %s: %s", args.name, argv[0], exc)
            return 1
        child[:] = [proc]
        log.info("%s started (pid %s)", args.name, proc.pid)
        while proc.poll() is None:
            if stopping.wait(0.2):
                try:
                    proc.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if stopping.is_set():
            break
        if time.monotonic() - started > STABLE_AFTER:
            delay = FIRST_DELAY
        log.warning("%s exited with %s; restarting in %.0fs", args.name, proc.returncode, delay)
        if stopping.wait(delay):
            break
        delay = min(delay * 2, MAX_DELAY)
    log.info("%s stopped", args.name)
    return 0
