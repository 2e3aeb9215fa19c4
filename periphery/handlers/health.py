"""``Health``: the agent's version, its host name, and whether a Docker engine answers."""

from __future__ import annotations

import logging
import socket
from importlib import metadata

from periphery.config import LoadedConfig
from periphery.docker_engine import engine_version
from periphery.fences import fence_file, highest_token
from protocol.messages import PROTOCOL_VERSION, HealthReport
from protocol.transport import Outcome

log = logging.getLogger(__name__)


def software_version() -> str:
    try:
        return metadata.version("stackward")
    except metadata.PackageNotFoundError:
        return "0+unknown"


async def handle(config: LoadedConfig) -> Outcome:
    version, error = await engine_version()
    report = HealthReport(
        version=software_version(),
        protocol=PROTOCOL_VERSION,
        hostname=socket.gethostname(),
        docker=bool(version),
        docker_version=version,
        docker_error=error,
        fence=highest_token(fence_file(config.root)),
    )
    return Outcome(exit_code=0, value=report)
