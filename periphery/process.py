"""Running a program with its output streamed, a deadline, and a process-group kill.

The program is started in a new session (its own process group), so cancelling or timing out
kills it and everything it started: SIGTERM to the group, SIGKILL after a grace period.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import anyio
import anyio.abc

from periphery.exceptions import CommandFailed, CommandTimeout

log = logging.getLogger(__name__)

Sink = Callable[[bytes], Awaitable[None]]
READ_CHUNK = 64 * 1024


def _kill_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # the group leader changed identity; fall back to the process
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


async def _pump(stream: anyio.abc.ByteReceiveStream | None, sink: Sink) -> None:
    if stream is None:
        return
    try:
        while True:
            await sink(await stream.receive(READ_CHUNK))
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass


async def _terminate(process: anyio.abc.Process, grace: float) -> None:
    _kill_group(process.pid, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await process.wait()
        return
    _kill_group(process.pid, signal.SIGKILL)
    with anyio.move_on_after(grace):
        await process.wait()


def exit_status(returncode: int) -> int:
    """A shell-style exit status: 128+N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


async def run_streaming(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None,
    time_limit: float,
    stdout: Sink,
    stderr: Sink,
    kill_grace: float = 2.0,
) -> int:
    """Run ``argv`` (no shell) and return its exit status; raise ``CommandTimeout`` past
    ``time_limit`` seconds. On cancellation the process group is killed before the cancel
    propagates; when the program exits, what it left running in its group is killed too (and
    so its pipes close)."""
    if not argv:
        raise CommandFailed("empty argv: nothing to run")
    try:
        process = await anyio.open_process(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandFailed(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
    timed_out = False
    try:
        with anyio.move_on_after(time_limit) as deadline:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pump, process.stdout, stdout)
                tg.start_soon(_pump, process.stderr, stderr)
                await process.wait()
                _kill_group(process.pid, signal.SIGKILL)
        timed_out = deadline.cancelled_caught
    finally:
        if process.returncode is None or timed_out:
            with anyio.CancelScope(shield=True):
                await _terminate(process, kill_grace)
        with anyio.CancelScope(shield=True):
            await process.aclose()
    if timed_out:
        raise CommandTimeout(f"{argv[0]!r} ran past its timeout of {time_limit:g}s and was killed")
    assert process.returncode is not None
    return exit_status(process.returncode)
