"""``Run``: an argv list in a directory under the root, output streamed, a timeout."""

from __future__ import annotations

import logging
import os

from periphery.config import LoadedConfig
from periphery.exceptions import CommandFailed, CommandTimeout, ForbiddenPath
from periphery.paths import confine
from periphery.process import run_streaming
from protocol.messages import ErrorCode, ErrorInfo, Run, Stream
from protocol.transport import Outcome, OutputWriter

log = logging.getLogger(__name__)


class _Chunks:
    """One stream of a request's output, read into frame buffers in place."""

    def __init__(self, out: OutputWriter, stream: Stream) -> None:
        self.out = out
        self.stream = stream

    def chunk_buffer(self, size: int) -> tuple[bytearray, memoryview]:
        return self.out.chunk_buffer(size)

    async def send_chunk(self, buffer: bytearray, length: int) -> None:
        await self.out.send_chunk(self.stream, buffer, length)


async def handle(command: Run, out: OutputWriter, config: LoadedConfig) -> Outcome:
    if not command.argv:
        return Outcome(error=ErrorInfo(ErrorCode.BAD_REQUEST, "argv is empty"))
    if not command.timeout > 0:
        return Outcome(error=ErrorInfo(ErrorCode.BAD_REQUEST, "timeout must be > 0"))
    try:
        cwd = confine(config.root, command.cwd)
    except ForbiddenPath as exc:
        return Outcome(error=ErrorInfo(ErrorCode.FORBIDDEN_PATH, str(exc)))
    if not cwd.is_dir():
        return Outcome(
            error=ErrorInfo(ErrorCode.BAD_REQUEST, f"cwd '{command.cwd}' is not a directory")
        )
    env = {**os.environ, **command.env} if command.env else None
    # Values of env may be secrets: log the program and where, never the environment.
    log.info("run %s in %s", command.argv[0], cwd)
    try:
        code = await run_streaming(
            command.argv,
            cwd=cwd,
            env=env,
            time_limit=command.timeout,
            stdout=_Chunks(out, Stream.STDOUT),
            stderr=_Chunks(out, Stream.STDERR),
            kill_grace=config.raw.kill_grace,
        )
    except CommandTimeout as exc:
        return Outcome(error=ErrorInfo(ErrorCode.TIMEOUT, str(exc)))
    except CommandFailed as exc:
        return Outcome(error=ErrorInfo(ErrorCode.SPAWN_FAILED, str(exc)))
    return Outcome(exit_code=code)
