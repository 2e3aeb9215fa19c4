"""Running a program with its output streamed, a deadline, and a process-group kill.

The program is started in a new session (its own process group), so cancelling or timing out
kills it and everything it started: SIGTERM to the group, SIGKILL after a grace period.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import anyio
import anyio.abc

from periphery.exceptions import CommandFailed, CommandTimeout

log = logging.getLogger(__name__)

Sink = Callable[[bytes], Awaitable[None]]


class ChunkSink(Protocol):
    """A sink that gives out buffers to read into and sends them filled, without a copy."""

    def chunk_buffer(self, size: int) -> tuple[bytearray, memoryview]: ...

    async def send_chunk(self, buffer: bytearray, length: int) -> None: ...


PIPE_BYTES = 1024 * 1024  # pipe capacity asked of the kernel: fewer, larger reads
READ_CHUNK = PIPE_BYTES
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


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


def _pipe() -> tuple[int, int]:
    """A pipe whose read end is ours (non-blocking) and whose write end goes to the child."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(read_end, _F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:  # over /proc/sys/fs/pipe-max-size: keep the default
        pass
    os.set_blocking(read_end, False)
    return read_end, write_end


async def _pump(fd: int, sink: Sink | ChunkSink) -> None:
    """Read ``fd`` until EOF, handing each chunk to ``sink`` as it arrives."""
    if not callable(sink):
        await _pump_into(fd, sink)
        return
    while True:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            await anyio.wait_readable(fd)
            continue
        if not data:
            return
        await sink(data)


async def _pump_into(fd: int, sink: ChunkSink) -> None:
    """Like ``_pump``, reading straight into the sink's buffers (no copy per chunk)."""
    buffer, view = sink.chunk_buffer(READ_CHUNK)
    while True:
        try:
            length = os.readv(fd, [view])
        except BlockingIOError:
            await anyio.wait_readable(fd)
            continue
        if not length:
            return
        await sink.send_chunk(buffer, length)
        buffer, view = sink.chunk_buffer(READ_CHUNK)


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
    stdout: Sink | ChunkSink,
    stderr: Sink | ChunkSink,
    kill_grace: float = 2.0,
) -> int:
    """Run ``argv`` (no shell) and return its exit status; raise ``CommandTimeout`` past
    ``time_limit`` seconds. On cancellation the process group is killed before the cancel
    propagates; when the program exits, what it left running in its group is killed too (and
    so its pipes close)."""
    if not argv:
        raise CommandFailed("empty argv: nothing to run")
    out_read, out_write = _pipe()
    err_read, err_write = _pipe()
    try:
        try:
            process = await anyio.open_process(
                list(argv),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=err_write,
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandFailed(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
        finally:
            os.close(out_write)
            os.close(err_write)
        timed_out = False
        try:
            with anyio.move_on_after(time_limit) as deadline:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_pump, out_read, stdout)
                    tg.start_soon(_pump, err_read, stderr)
                    await process.wait()
                    # What the program left running in its group dies with it (its pipes close).
                    _kill_group(process.pid, signal.SIGKILL)
            timed_out = deadline.cancelled_caught
        finally:
            if process.returncode is None or timed_out:
                with anyio.CancelScope(shield=True):
                    await _terminate(process, kill_grace)
            with anyio.CancelScope(shield=True):
                await process.aclose()
    finally:
        os.close(out_read)
        os.close(err_read)
    if timed_out:
        raise CommandTimeout(f"{argv[0]!r} ran past its timeout of {time_limit:g}s and was killed")
    assert process.returncode is not None
    return exit_status(process.returncode)
