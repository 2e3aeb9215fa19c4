"""Run a command from an argv list and stream its output, line by line, as it arrives.

Every command runs in a new session (its own process group). On timeout or cancellation the
whole group is terminated (SIGTERM, then SIGKILL after a grace period), so a shell's children die
with it. When the command itself exits while something it started still holds its output pipes,
the group is killed after a short grace period too: a deploy step never hangs on a stray daemon.

Output is delivered to an :data:`Emit` callback as ``(stream, line)`` where ``stream`` is
``"stdout"`` or ``"stderr"`` and ``line`` is one line of bytes ending in ``b"\\n"`` (a final
unterminated line gets one; an overlong line is cut into pieces of :data:`MAX_LINE` bytes).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process

from periphery.exceptions import CommandFailed, CommandTimeout

log = logging.getLogger(__name__)

Emit = Callable[[str, bytes], Awaitable[None]]

MAX_LINE = 64 * 1024
READ_SIZE = 64 * 1024
TAIL_LINES = 20
# How long a command's leftover children may keep its pipes open after it exits.
PIPE_GRACE = 1.0
# Between SIGTERM and SIGKILL when a command is stopped.
KILL_GRACE = 2.0

# Variables a child inherits from the agent; everything else comes from the request.
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
    """A command that ran to its end."""

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
    """A command's exit status and its whole (small) output."""

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
    """An argv list as a person would type it (for logs only; never executed)."""
    return " ".join(
        a if a and all(c.isalnum() or c in "-_./:=@,+" for c in a) else repr(a) for a in argv
    )


async def run(
    argv: Sequence[str],
    *,
    emit: Emit,
    time_limit: float,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> Completed:
    """Run ``argv`` to its end, streaming output through ``emit``; kill its group on timeout.

    Returns whatever the exit code; raises :class:`CommandFailed` when the program cannot be
    started and :class:`CommandTimeout` when it outlives ``time_limit`` seconds.
    """
    args = tuple(str(a) for a in argv)
    try:
        process = await anyio.open_process(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandFailed(f"cannot start {args[0]}: {exc.strerror or exc}") from exc
    log.debug("started pid %s: %s", process.pid, shown(args))
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        with anyio.move_on_after(time_limit) as scope:
            await _drain(process, emit, tail)
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(process)
    if scope.cancelled_caught:
        raise CommandTimeout(
            f"{shown(args)} ran past its timeout of {time_limit:g}s and was killed"
            + ("\nlast output:\n" + "\n".join(f"  {t}" for t in tail) if tail else "")
        )
    returncode = process.returncode
    assert returncode is not None
    return Completed(args, returncode, tuple(tail))


async def capture(
    argv: Sequence[str],
    *,
    time_limit: float,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    limit: int = 4 * 1024 * 1024,
) -> Captured:
    """Run a short query command and keep its output (at most ``limit`` bytes per stream)."""
    out: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    async def keep(stream: str, line: bytes) -> None:
        buf = out[stream]
        if len(buf) < limit:
            buf += line[: limit - len(buf)]

    done = await run(argv, emit=keep, time_limit=time_limit, cwd=cwd, env=env)
    return Captured(done.returncode, bytes(out["stdout"]), bytes(out["stderr"]))


async def _drain(process: Process, emit: Emit, tail: deque[str]) -> None:
    assert process.stdout is not None and process.stderr is not None
    async with anyio.create_task_group() as watch:
        watch.start_soon(_reap_leftovers, process)
        async with anyio.create_task_group() as pumps:
            pumps.start_soon(_pump, process.stdout, "stdout", emit, tail)
            pumps.start_soon(_pump, process.stderr, "stderr", emit, tail)
        await process.wait()
        watch.cancel_scope.cancel()


async def _reap_leftovers(process: Process) -> None:
    """Once the command exited, give its children PIPE_GRACE to let go of the pipes."""
    await process.wait()
    await anyio.sleep(PIPE_GRACE)
    log.debug("pid %s exited but its group holds the pipes; killing the group", process.pid)
    _killpg(process.pid, signal.SIGKILL)


async def _pump(stream: ByteReceiveStream, name: str, emit: Emit, tail: deque[str]) -> None:
    pending = b""
    async for chunk in stream:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            await _deliver(name, line, emit, tail)
        while len(pending) > MAX_LINE:
            await _deliver(name, pending[:MAX_LINE], emit, tail)
            pending = pending[MAX_LINE:]
    if pending:
        await _deliver(name, pending, emit, tail)


async def _deliver(name: str, line: bytes, emit: Emit, tail: deque[str]) -> None:
    text = line.decode("utf-8", "replace").rstrip("\r")
    if text.strip():
        tail.append(text)
    await emit(name, line + b"\n")


async def _stop(process: Process) -> None:
    """Make sure the process and its group are gone and the pipes closed (shielded, bounded)."""
    if process.returncode is None:
        _killpg(process.pid, signal.SIGTERM)
        with anyio.move_on_after(KILL_GRACE):
            await process.wait()
        if process.returncode is None:
            _killpg(process.pid, signal.SIGKILL)
            with anyio.move_on_after(KILL_GRACE):
                await process.wait()
    else:
        # The command is gone; anything it left in its group goes too.
        _killpg(process.pid, signal.SIGKILL)
    with anyio.move_on_after(KILL_GRACE):
        await process.aclose()


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
