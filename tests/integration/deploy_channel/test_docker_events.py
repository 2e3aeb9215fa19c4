"""``WatchDocker`` on a real periphery and engine: events stream to the core, and the watch picks
the stream up again after the engine goes away and comes back.

The engine "restarts" behind a unix-socket proxy the test owns (``DOCKER_HOST`` of the agent),
so the shared test engine keeps running: closing the proxy cuts every connection and refuses
new ones, as a stopped engine does; opening it again is the engine back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from core.pool import PeripheryPool, ServerEndpoint
from protocol.messages import DockerEvent, DockerEvents, WatchDocker
from tests.support.processes import KeyPair

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

ENGINE_SOCKET = "/var/run/docker.sock"


class SocketProxy:
    """A unix socket in front of the engine's; ``stop`` is the engine going away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._scope: anyio.CancelScope | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        with anyio.CancelScope() as scope:
            self._scope = scope
            self.path.unlink(missing_ok=True)
            listener = await anyio.create_unix_listener(self.path)
            task_status.started()
            async with listener:
                await listener.serve(self._relay)
        self.path.unlink(missing_ok=True)

    def stop(self) -> None:
        assert self._scope is not None
        self._scope.cancel()

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_unix(ENGINE_SOCKET) as engine:

            async def pump(a: anyio.abc.SocketStream, b: anyio.abc.SocketStream) -> None:
                try:
                    async for chunk in a:
                        await b.send(chunk)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
                tg.cancel_scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(pump, client, engine)
                tg.start_soon(pump, engine, client)


async def wait_for(
    frames: list[DockerEvents], test: Callable[[DockerEvents], Any], within: float = 20.0
) -> DockerEvents:
    with anyio.fail_after(within):
        while True:
            for f in frames:
                if test(f):
                    return f
            await anyio.sleep(0.05)


def event_named(name: str, *actions: str) -> Callable[[DockerEvents], bool]:
    def test(frame: DockerEvents) -> bool:
        return any(e.name == name and e.action in actions for e in frame.events)

    return test


async def test_engine_events_stream_and_resume_after_the_engine_comes_back(
    tmp_path: Path,
    core_keys: KeyPair,
    periphery_factory,
    docker_env,  # type: ignore[no-untyped-def]
) -> None:
    if not await anyio.Path(ENGINE_SOCKET).exists():
        pytest.skip(f"no engine socket at {ENGINE_SOCKET}")
    proxy = SocketProxy(tmp_path / "engine.sock")
    periphery = periphery_factory.make("p1")
    periphery.env["DOCKER_HOST"] = f"unix://{proxy.path}"
    name = f"{docker_env.prefix}-watched"
    frames: list[DockerEvents] = []
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.run)
        await anyio.to_thread.run_sync(periphery.start_and_wait)
        async with PeripheryPool(core_keys.key) as pool:
            pool.set_servers([ServerEndpoint("p1", periphery.keys.public, periphery.url)])
            channel = await pool.channel("p1")
            async with channel.call(WatchDocker(), on_events=frames.append):
                await anyio.sleep(0.5)  # the watch subscribes
                await anyio.to_thread.run_sync(
                    docker_env.docker,
                    "run",
                    "-d",
                    "--init",
                    "--name",
                    name,
                    "--label",
                    "com.docker.compose.project=" + name,
                    docker_env.image,
                    "sleep",
                    "60",
                )
                started = await wait_for(frames, event_named(name, "start"))
                event: DockerEvent = next(e for e in started.events if e.name == name)
                assert event.type == "container" and event.project == name and event.time_nano > 0

                proxy.stop()  # the engine goes away
                lost = await wait_for(frames, lambda f: f.engine == "lost")
                assert lost.message
                await tg.start(proxy.run)  # ... and comes back
                await wait_for(frames, lambda f: f.engine == "resumed")

                await anyio.to_thread.run_sync(docker_env.docker, "kill", name)
                died = await wait_for(frames, event_named(name, "die", "kill"))
                assert any(e.name == name for e in died.events)
                # The start seen before the outage is not sent again on resume.
                starts = [
                    e for f in frames for e in f.events if e.name == name and e.action == "start"
                ]
                assert len(starts) == 1
        tg.cancel_scope.cancel()
