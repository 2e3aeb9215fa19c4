"""Whether the local Docker engine answers, through aiodocker (imported on first use)."""

from __future__ import annotations

import anyio

ENGINE_PROBE_TIMEOUT = 3.0


async def engine_version(time_limit: float = ENGINE_PROBE_TIMEOUT) -> tuple[str, str]:
    """``(version, "")`` when the engine answers, else ``("", reason)``."""
    import aiodocker  # deferred: keeps the idle agent small

    try:
        with anyio.fail_after(time_limit):
            docker = aiodocker.Docker()
            try:
                info = await docker.version()
            finally:
                await docker.close()
    except TimeoutError:
        return "", f"no answer from the Docker engine in {time_limit:g}s"
    except Exception as exc:  # aiodocker raises many kinds: socket missing, refused, API
        return "", f"{type(exc).__name__}: {exc}".strip()
    return str(info.get("Version", "")), ""
