"""The agent's one process runner: every program the agent starts is started here.

A program is an argv list (never a shell line built from a request; a user's own command is
handed to a shell as one argument by its caller). It runs in a new session (its own process
group), with stdin from ``stdin`` bytes or ``/dev/null``. Its output is delivered as it arrives,
to one of two kinds of sink:

- chunks (``Sink`` or the zero-copy ``ChunkSink``), for the ``Run`` command, which forwards
  bytes as they come;
- lines (``Emit``, ``run``): ``(stream, line)`` with ``stream`` ``"stdout"`` or ``"stderr"`` and
  ``line`` ending in ``b"\\n"`` (a final unterminated line gets one), for the deploy steps, which
  also keep the last lines. An overlong line goes in pieces of :data:`MAX_LINE` bytes, only the
  last ending in ``b"\\n"``: the core sees the stream as it was (a secret cut between two
  pieces is still masked whole there), and the tail keeps such a line as its length only.

On timeout or cancellation the whole group is stopped (SIGTERM, then SIGKILL after a grace
period), so a shell's children die with it. When the program exits while something it started
still holds its output pipes, the group is killed after :data:`PIPE_GRACE`: a step never hangs on
a stray daemon.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
import anyio.abc

from periphery.exceptions import CommandFailed, CommandTimeout

log = logging.getLogger(__name__)

Emit = Callable[[str, bytes], Awaitable[None]]
Sink = Callable[[bytes], Awaitable[None]]


class ChunkSink(Protocol):
    """A sink that gives out buffers to read into and sends them filled, without a copy."""

    def chunk_buffer(self, size: int) -> tuple[bytearray, memoryview]: ...

    async def send_chunk(self, buffer: bytearray, length: int) -> None: ...


PIPE_BYTES = 1024 * 1024  # pipe capacity asked of the kernel: fewer, larger reads
READ_CHUNK = PIPE_BYTES
MAX_LINE = 64 * 1024
TAIL_LINES = 20
TAIL_LINE_MAX = 4096  # a longer line is kept in the tail as its length, never cut
# How long a program's leftover children may keep its pipes open after it exits.
PIPE_GRACE = 1.0
# Between SIGTERM and SIGKILL when a program is stopped.
KILL_GRACE = 2.0
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

# Variables a child inherits from the agent; everything else comes from the caller.
_INHERITED = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "DOCKER_HOST",
        "DOCKER_CONFIG",
        "DOCKER_CONTEXT",
        "DOCKER_CERT_PATH",
        "DOCKER_TLS_VERIFY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)


@dataclass(frozen=True)
class Completed:
    """A program that ran to its end."""

    argv: tuple[str, ...]
    returncode: int
    tail: tuple[str, ...]

    def summary(self, what: str | None = None) -> str:
        """``what`` (default: the program) exited N, with the last output lines indented."""
        lines = [f"{what or self.argv[0]} exited with code {self.returncode}"]
        if self.tail:
            lines.append("last output:")
            lines.extend(f"  {line}" for line in self.tail)
        return "\n".join(lines)


@dataclass(frozen=True)
class Captured:
    """A program's exit status and its whole (small) output."""

    returncode: int
    stdout: bytes
    stderr: bytes


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The agent's harmless variables (PATH, HOME, locale, DOCKER_*) overlaid with ``extra``."""
    env = {k: v for k, v in os.environ.items() if k in _INHERITED or k.startswith("LC_")}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if extra:
        env.update(extra)
    return env


async def discard(stream: str, line: bytes) -> None:
    """An :data:`Emit` that drops everything."""


async def note(emit: Emit, text: str, stream: str = "stdout") -> None:
    """Emit a line of stackward's own (a command about to run, a warning)."""
    for line in text.splitlines() or [""]:
        await emit(stream, line.encode() + b"\n")


def shown(argv: Sequence[str]) -> str:
    """An argv list as a person would type it in a shell (for logs only; never executed).
    Quoted as ``sh`` quotes (``shlex.quote``), never with Python's escapes: a value shows as
    written, so the core's masking finds it."""
    return shlex.join(argv)


def exit_status(returncode: int) -> int:
    """A shell-style exit status: 128+N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


# ------------------------------------------------------------------------------------ runner


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
    """Like ``_pump``, reading straight into the sink's buffers (no copy per chunk). A buffer
    is read into again when nothing but this loop holds it once its chunk is sent (the socket
    took it all, or the transport copied the rest); one still referenced (queued, or kept by
    a transport) is left alone and a fresh one is taken: no zero-filling of 1 MiB per chunk."""
    buffer, view = sink.chunk_buffer(READ_CHUNK)
    ours = sys.getrefcount(buffer)
    while True:
        try:
            length = os.readv(fd, [view])
        except BlockingIOError:
            await anyio.wait_readable(fd)
            continue
        if not length:
            return
        await sink.send_chunk(buffer, length)
        if sys.getrefcount(buffer) != ours:
            buffer, view = sink.chunk_buffer(READ_CHUNK)
            ours = sys.getrefcount(buffer)


async def _feed(fd: int, data: bytes) -> None:
    """Write ``data`` to the child's stdin, then close it (a child that stops reading early
    just loses the rest)."""
    view = memoryview(data)
    try:
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                await anyio.wait_writable(fd)
                continue
            view = view[written:]
    except (BrokenPipeError, OSError):
        pass
    finally:
        os.close(fd)


async def _terminate(process: anyio.abc.Process, grace: float) -> None:
    _kill_group(process.pid, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await process.wait()
        return
    _kill_group(process.pid, signal.SIGKILL)
    with anyio.move_on_after(grace):
        await process.wait()


async def run_streaming(
    argv: Sequence[str],
    *,
    cwd: Path | str | None,
    env: Mapping[str, str] | None,
    time_limit: float,
    stdout: Sink | ChunkSink,
    stderr: Sink | ChunkSink,
    kill_grace: float = KILL_GRACE,
    stdin: bytes | None = None,
) -> int:
    """Run ``argv`` (no shell) and return its exit status (128+N when killed by signal N).

    Raises :class:`CommandFailed` when it cannot start and :class:`CommandTimeout` past
    ``time_limit`` seconds. On cancellation the process group is killed before the cancel
    propagates; when the program exits, what it left running in its group is killed once the
    pipes stay open longer than :data:`PIPE_GRACE`."""
    args = [str(a) for a in argv]
    if not args:
        raise CommandFailed("empty argv: nothing to run")
    made: list[int] = []
    try:  # out of descriptors: the program cannot start, and the agent goes on
        out_read, out_write = _pipe()
        made += (out_read, out_write)
        err_read, err_write = _pipe()
        made += (err_read, err_write)
        in_read, in_write = os.pipe2(os.O_CLOEXEC) if stdin is not None else (-1, -1)
    except OSError as exc:
        for fd in made:
            os.close(fd)
        raise CommandFailed(f"cannot start {args[0]}: {exc.strerror or exc}") from exc
    if in_write >= 0:
        os.set_blocking(in_write, False)
    try:
        try:
            process = await anyio.open_process(
                args,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=in_read if in_read >= 0 else subprocess.DEVNULL,
                stdout=out_write,
                stderr=err_write,
                start_new_session=True,
            )
        except OSError as exc:
            if in_write >= 0:
                os.close(in_write)
            raise CommandFailed(f"cannot start {args[0]}: {exc.strerror or exc}") from exc
        finally:
            os.close(out_write)
            os.close(err_write)
            if in_read >= 0:
                os.close(in_read)
        log.debug("started pid %s: %s", process.pid, shown(args))
        timed_out = False
        try:
            with anyio.move_on_after(time_limit) as deadline:
                async with anyio.create_task_group() as tg:
                    if stdin is not None:
                        tg.start_soon(_feed, in_write, stdin)
                    drained = _Drained(2)
                    tg.start_soon(drained.pump, out_read, stdout)
                    tg.start_soon(drained.pump, err_read, stderr)
                    await process.wait()
                    with anyio.move_on_after(PIPE_GRACE):
                        await drained.event.wait()
                    # What the program left running in its group dies with it.
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
        raise CommandTimeout(
            f"{shown(args)} ran past its timeout of {time_limit:g}s and was killed"
        )
    assert process.returncode is not None
    return exit_status(process.returncode)


class _Drained:
    """Pumps whose ``event`` is set once every one of them has reached EOF."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.event = anyio.Event()

    async def pump(self, fd: int, sink: Sink | ChunkSink) -> None:
        try:
            await _pump(fd, sink)
        finally:
            self.remaining -= 1
            if not self.remaining:
                self.event.set()


# ------------------------------------------------------------------------------------- lines


class _Lines:
    """A chunk sink that cuts one stream into lines for an :data:`Emit`, keeping a tail.

    A line longer than :data:`MAX_LINE` goes in pieces without a newline of their own (the
    stream is not changed); the tail keeps whole lines only (a line longer than
    :data:`TAIL_LINE_MAX` as its length), so a secret is never cut in two there either."""

    def __init__(self, name: str, emit: Emit, tail: deque[str]) -> None:
        self.name = name
        self.emit = emit
        self.tail = tail
        self.pending = b""
        self.sent = 0  # bytes of the current line already sent in pieces

    async def __call__(self, chunk: bytes) -> None:
        self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            await self._deliver(line)
        while len(self.pending) > MAX_LINE:
            piece, self.pending = self.pending[:MAX_LINE], self.pending[MAX_LINE:]
            self.sent += len(piece)
            await self.emit(self.name, piece)

    async def flush(self) -> None:
        if self.pending or self.sent:
            piece, self.pending = self.pending, b""
            await self._deliver(piece)

    async def _deliver(self, line: bytes) -> None:
        length, self.sent = self.sent + len(line), 0
        if length > TAIL_LINE_MAX:
            self.tail.append(f"({length} bytes on one line)")
        else:
            text = line.decode("utf-8", "replace").rstrip("\r")
            if text.strip():
                self.tail.append(text)
        await self.emit(self.name, line + b"\n")


async def run(
    argv: Sequence[str],
    *,
    emit: Emit,
    time_limit: float,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    kill_grace: float = KILL_GRACE,
) -> Completed:
    """Run ``argv`` to its end, streaming lines through ``emit``; kill its group on timeout.

    Returns whatever the exit code; raises :class:`CommandFailed` when the program cannot be
    started and :class:`CommandTimeout` (with the last lines) when it outlives ``time_limit``.
    """
    args = tuple(str(a) for a in argv)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    out, err = _Lines("stdout", emit, tail), _Lines("stderr", emit, tail)
    try:
        code = await run_streaming(
            args,
            cwd=cwd,
            env=env,
            time_limit=time_limit,
            stdout=out,
            stderr=err,
            kill_grace=kill_grace,
            stdin=stdin,
        )
    except CommandTimeout as exc:
        await out.flush()
        await err.flush()
        last = "\nlast output:\n" + "\n".join(f"  {t}" for t in tail) if tail else ""
        raise CommandTimeout(f"{exc}{last}") from None
    await out.flush()
    await err.flush()
    return Completed(args, code, tuple(tail))


async def capture(
    argv: Sequence[str],
    *,
    time_limit: float,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    limit: int = 4 * 1024 * 1024,
) -> Captured:
    """Run a short query and keep its output (at most ``limit`` bytes per stream)."""
    out: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def keeper(name: str) -> Sink:
        async def keep(chunk: bytes) -> None:
            buf = out[name]
            if len(buf) < limit:
                buf += chunk[: limit - len(buf)]

        return keep

    code = await run_streaming(
        argv,
        cwd=cwd,
        env=env,
        time_limit=time_limit,
        stdout=keeper("stdout"),
        stderr=keeper("stderr"),
        stdin=stdin,
    )
    return Captured(code, bytes(out["stdout"]), bytes(out["stderr"]))
