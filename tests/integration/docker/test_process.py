"""periphery.process: streaming, timeouts and process-group cleanup (no Docker needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from periphery.exceptions import CommandFailed, CommandTimeout
from periphery.process import run

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.anyio


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def wait_dead(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        await anyio.sleep(0.05)
    return False


async def test_lines_are_streamed_as_they_arrive() -> None:
    seen: list[tuple[float, str, bytes]] = []

    async def emit(stream: str, line: bytes) -> None:
        seen.append((time.monotonic(), stream, line))

    done = await run(
        ["sh", "-c", "echo one; sleep 0.4; echo two >&2; printf three"], emit=emit, time_limit=10
    )
    assert done.returncode == 0
    assert [(s, line) for _, s, line in seen] == [
        ("stdout", b"one\n"),
        ("stderr", b"two\n"),
        ("stdout", b"three\n"),
    ]
    assert seen[1][0] - seen[0][0] >= 0.3
    assert done.tail == ("one", "two", "three")


async def test_exit_code_and_tail() -> None:
    async def emit(stream: str, line: bytes) -> None:
        pass

    done = await run(
        ["sh", "-c", "for i in $(seq 1 30); do echo line$i; done; exit 4"], emit=emit, time_limit=10
    )
    assert done.returncode == 4
    assert done.tail[-1] == "line30" and len(done.tail) == 20
    assert "exited with code 4" in done.summary()


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def emit(stream: str, line: bytes) -> None:
        pass

    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="timeout of 0.5s"):
        await run(
            ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; echo started; sleep 30"],
            emit=emit,
            time_limit=0.5,
        )
    assert time.monotonic() - started < 4
    assert await wait_dead(int(pidfile.read_text()))


async def test_cancellation_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def emit(stream: str, line: bytes) -> None:
        pass

    with anyio.move_on_after(0.5):
        await run(
            ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; sleep 30"], emit=emit, time_limit=60
        )
    assert await wait_dead(int(pidfile.read_text()))


async def test_children_holding_the_pipes_do_not_hang_it() -> None:
    async def emit(stream: str, line: bytes) -> None:
        pass

    started = time.monotonic()
    done = await run(["sh", "-c", "sleep 30 & echo done"], emit=emit, time_limit=20)
    assert done.returncode == 0 and done.tail == ("done",)
    assert time.monotonic() - started < 4


async def test_long_lines_go_in_pieces_and_the_stream_is_unchanged() -> None:
    """A line over 64 KiB goes in 64 KiB pieces with no newline added (the core masks the
    stream across them), and the tail keeps its length, never a cut piece."""
    lines: list[bytes] = []

    async def emit(stream: str, line: bytes) -> None:
        lines.append(line)

    done = await run(
        ["sh", "-c", "head -c 150000 /dev/zero | tr '\\0' x; sleep 0.2; echo; echo short"],
        emit=emit,
        time_limit=10,
    )
    assert b"".join(lines) == b"x" * 150000 + b"\nshort\n"
    pieces = [x for x in lines if not x.endswith(b"\n")]  # parts of a line still coming
    assert pieces and all(len(x) == 65536 for x in pieces)
    assert lines[-1] == b"short\n"
    assert done.tail == ("(150000 bytes on one line)", "short")
    assert "xxxx" not in done.summary()


def test_out_of_descriptors_is_a_program_that_cannot_start() -> None:
    """EMFILE while making the pipes: CommandFailed (the caller's error path), not an OSError
    that would end the agent's task."""
    script = (
        "import anyio, os, resource\n"
        "from periphery.exceptions import CommandFailed\n"
        "from periphery.process import capture\n"
        "used = len(os.listdir('/proc/self/fd'))\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (used + 2, used + 2))\n"
        "try:\n"
        "    anyio.run(lambda: capture(['true'], time_limit=5))\n"
        "except CommandFailed as exc:\n"
        "    print('CommandFailed:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd=REPO
    )
    assert done.stdout == "CommandFailed: cannot start true: Too many open files\n", done.stderr


async def test_missing_program() -> None:
    async def emit(stream: str, line: bytes) -> None:
        pass

    with pytest.raises(CommandFailed, match="cannot start"):
        await run(["/nonexistent/program"], emit=emit, time_limit=5)
