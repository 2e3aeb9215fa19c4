"""``WatchDocker``: follow the engine's events and stream them to the core until cancelled.

The engine's ``/events`` stream is read through aiodocker, filtered to the event types asked for
and the actions the core uses, reduced to ``DockerEvent`` (``reduce`` is pure), and sent in
``DockerEvents`` frames, several at a time when they come quickly. When the stream ends or the
engine cannot be reached, the core is told (``engine="lost"``) and the watch retries with
backoff; when it answers again the core is told (``"resumed"``) and the stream is picked up
from the time of the last event seen (the engine replays what it still has), so a stream that
only broke loses nothing and the last event seen is not repeated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, cast

import anyio

from protocol.backoff import Backoff
from protocol.messages import DockerEvent, DockerEvents, WatchDocker
from protocol.transport import Outcome, OutputWriter

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0  # seconds for the engine to answer before the stream starts
RETRY_INITIAL = 0.2
RETRY_MAX = 5.0

ACTIONS: Mapping[str, frozenset[str]] = {
    "container": frozenset({"start", "die", "oom", "kill", "stop", "destroy", "health_status"}),
    "service": frozenset({"create", "update", "remove"}),
    "node": frozenset({"create", "update", "remove"}),
}
_PROJECT_LABELS = ("com.docker.compose.project", "com.docker.stack.namespace")
_SERVICE_LABELS = ("com.docker.compose.service", "com.docker.swarm.service.name")
_DETAIL_KEYS = (
    "exitCode",
    "signal",
    "image",
    "replicas.new",
    "replicas.old",
    "updatestate.new",
    "updatestate.old",
    "state.new",
    "state.old",
    "availability.new",
    "availability.old",
)


def reduce(raw: Mapping[str, Any], types: frozenset[str]) -> DockerEvent | None:
    """The engine's event as a ``DockerEvent``, or None when the core has no use for it."""
    kind = str(raw.get("Type", ""))
    action = str(raw.get("Action", ""))
    health = ""
    if action.startswith("health_status"):
        action, _, health = action.partition(":")
        health = health.strip()
    if kind not in types or action not in ACTIONS.get(kind, frozenset()):
        return None
    actor = raw.get("Actor") or {}
    attrs: Mapping[str, Any] = actor.get("Attributes") or {}
    detail = {k: str(attrs[k]) for k in _DETAIL_KEYS if k in attrs}
    if health:
        detail["health"] = health
    time_nano = raw.get("timeNano")
    if not isinstance(time_nano, int):
        time_nano = int(raw.get("time", 0) or 0) * 1_000_000_000
    return DockerEvent(
        time_nano=time_nano,
        type=kind,
        action=action,
        actor=str(actor.get("ID", "")),
        name=str(attrs.get("name", "")),
        project=next((str(attrs[k]) for k in _PROJECT_LABELS if k in attrs), ""),
        service=next((str(attrs[k]) for k in _SERVICE_LABELS if k in attrs), ""),
        detail=detail,
    )


async def handle(command: WatchDocker, out: OutputWriter) -> Outcome:
    """Runs until the core cancels it (the channel's cancel scope)."""
    watch = _Watch(frozenset(command.types), out)
    backoff = Backoff(initial=RETRY_INITIAL, maximum=RETRY_MAX)
    while True:
        try:
            await watch.follow(backoff)
            message = "the engine closed its event stream"
        except _EngineDown as exc:
            message = str(exc)
        if not watch.lost:
            watch.lost = True
            log.warning("docker events: %s; retrying", message)
            await out.events(DockerEvents(id=0, engine="lost", message=message))
        await anyio.sleep(backoff.next_delay())


class _EngineDown(Exception):
    pass


class _Watch:
    """One watch's state across reconnections; also aiodocker's channel (``publish``)."""

    def __init__(self, types: frozenset[str], out: OutputWriter) -> None:
        self.types = types
        self.out = out
        self.lost = False
        self.since_nano = 0
        self.seen_last: tuple[int, str, str] = (0, "", "")

    async def follow(self, backoff: Backoff) -> None:
        import aiodocker  # deferred: keeps the idle agent small

        docker = aiodocker.Docker()
        try:
            try:
                with anyio.fail_after(PROBE_TIMEOUT):
                    await docker.version()
            except Exception as exc:  # refused, missing socket, timeout, API error
                raise _EngineDown(f"no Docker engine: {type(exc).__name__}: {exc}") from exc
            if self.lost:
                self.lost = False
                log.info("docker events: the engine answers again")
                await self.out.events(DockerEvents(id=0, engine="resumed"))
            backoff.reset()
            params: dict[str, str] = {"filters": json.dumps({"type": sorted(self.types)})}
            if self.since_nano:
                sec, nano = divmod(self.since_nano, 1_000_000_000)
                params["since"] = f"{sec}.{nano:09d}"
            events = cast(Any, docker.events)
            events.channel = self  # our publish() gets every event, in order
            try:
                await events.run(**params)
            except Exception as exc:  # the stream broke
                raise _EngineDown(f"event stream lost: {type(exc).__name__}: {exc}") from exc
        finally:
            await docker.close()

    async def publish(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            return  # None: the end of the stream
        raw = dict(raw)
        t = raw.get("time")
        if t is not None and not isinstance(t, int | float):  # aiodocker made it a datetime
            raw["time"] = int(t.timestamp())
        event = reduce(raw, self.types)
        if event is None:
            return
        key = (event.time_nano, event.actor, event.action)
        if key == self.seen_last:
            return  # the last event seen, again, after a resume
        self.seen_last = key
        self.since_nano = event.time_nano
        await self.out.events(DockerEvents(id=0, events=[event]))
