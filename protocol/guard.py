"""Bounds on a listener before authentication, for aiohttp servers (the agent's ``/ws`` and
the core's port that serves ``/ws/periphery``).

``GuardedRunner`` is an ``aiohttp.web.AppRunner`` whose connections are watched from the TCP
accept (``protocol.admission``): a deadline from accept to a completed handshake, which covers
the HTTP upgrade, and caps on unauthenticated connections per source address and in total (the
one that made the least progress, stuck the longest, is evicted: first bytes, the upgrade and
each handshake message are progress). A request for any path other than the handshake paths
releases its connection (plain HTTP has its own authentication); on a handshake path
``protocol.connect`` finds the guard on the request, marks its progress, and releases the
connection once the peer proved its key.

``quiet_descriptor_exhaustion`` makes "too many open files" appear in the log once per
interval, with a count, instead of once per failed accept.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import select
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web

from protocol.admission import Admission, AdmissionLimits, Stage

log = logging.getLogger(__name__)

GUARD_KEY: Any = (
    web.RequestKey("stackward.connection_guard", object)
    if hasattr(web, "RequestKey")
    else "stackward.connection_guard"
)
"""Where a handshake path's request carries its ``ConnectionGuard``."""


def listen_backlog() -> int:
    """The guarded listeners' accept queue: up to 1024 (aiohttp's default is 128: while a flood
    keeps that full, the kernel drops a real peer's SYN and its retry comes a second later, past
    a short connect timeout), but no more than half the descriptors the process may open: what
    waits beyond those cannot be accepted, and after "too many open files" asyncio accepts
    again only a second later, so a long queue of dead connections would keep a real peer
    waiting. Admission, not the queue, bounds what unauthenticated peers hold."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(128, min(1024, soft // 2))


class _Watched(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the guard told when it starts and ends."""

    __slots__ = ("_inner", "_guard", "_transport", "_silent")

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.BaseTransport | None = None
        self._silent = True  # nothing received yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._inner.connection_made(transport)
        self._guard._accepted(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._guard.release(self._transport)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._silent:
            self._silent = False
            if self._transport is not None:
                self._guard.progress(self._transport, Stage.RECEIVING)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def _has_bytes(transport: Any) -> bool:
    """Whether the connection's socket has bytes (or its end) waiting to be read: a
    zero-timeout poll, no read."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


class ConnectionGuard:
    """Watches one listener's connections until each authenticates or is released."""

    def __init__(self, limits: AdmissionLimits, handshake_paths: Collection[str]) -> None:
        self.admission = Admission(limits)
        self.handshake_paths = frozenset(handshake_paths)
        self._timers: dict[asyncio.BaseTransport, asyncio.TimerHandle] = {}
        self.evicted = 0
        self.expired = 0
        self._last_note = 0.0

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], Any]:
        return lambda: _Watched(inner(), self)

    def _accepted(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        now = time.monotonic()
        for old in self.admission.admit(transport, address, now, _has_bytes):
            self._drop(old)  # type: ignore[arg-type]
            self.evicted += 1
            self._note(now, f"evicted an unauthenticated connection to admit one from {address}")
        loop = asyncio.get_running_loop()
        self._timers[transport] = loop.call_later(
            self.admission.limits.deadline, self._deadline, transport
        )

    def _deadline(self, transport: asyncio.BaseTransport) -> None:
        self._timers.pop(transport, None)
        if self.admission.release(transport):
            self.expired += 1
            peer = transport.get_extra_info("peername")
            log.info(
                "closed %s: no completed handshake %gs after the accept",
                peer[0] if isinstance(peer, tuple) and peer else "a connection",
                self.admission.limits.deadline,
            )
            transport.abort()  # type: ignore[attr-defined]

    def _drop(self, transport: asyncio.BaseTransport) -> None:
        timer = self._timers.pop(transport, None)
        if timer is not None:
            timer.cancel()
        transport.abort()  # type: ignore[attr-defined]

    def _note(self, now: float, what: str) -> None:
        if now - self._last_note >= 10.0:
            self._last_note = now
            log.warning(
                "%s; caps: %s per address, %s in all (%s evicted so far)",
                what,
                self.admission.limits.per_address,
                self.admission.limits.total,
                self.evicted,
            )

    def progress(self, transport: asyncio.BaseTransport, stage: Stage) -> None:
        """The connection got further (evicted after those that got less far)."""
        self.admission.advance(transport, stage)

    def release(self, transport: asyncio.BaseTransport) -> None:
        """Stop watching: authenticated, gone, or plain HTTP."""
        timer = self._timers.pop(transport, None)
        if timer is not None:
            timer.cancel()
        self.admission.release(transport)

    authenticated = release

    def handover(self, transport: asyncio.BaseTransport, now: float) -> float:
        """The handshake takes over: it keeps the rest of the deadline (and closes cleanly when
        it passes); the connection still counts against the caps until it authenticates."""
        timer = self._timers.pop(transport, None)
        if timer is not None:
            timer.cancel()
        self.admission.advance(transport, Stage.UPGRADED)
        return self.admission.remaining(transport, now)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            if request.path in self.handshake_paths:
                request[GUARD_KEY] = self
            else:
                self.release(transport)
        return await handler(request)


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose sites' connections are watched by ``guard``."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        app.middlewares.insert(0, guard.middleware)
        super().__init__(app, **kwargs)
        self.guard = guard
        quiet_descriptor_exhaustion()

    @property
    def server(self) -> Any:
        inner = super().server
        if inner is None:
            return None
        return self.guard.protocol_factory(inner)


_EXHAUSTION_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class _ExhaustionFilter(logging.Filter):
    """Lets one record about descriptor/memory exhaustion through per interval."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self._last = -interval
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        context_exc = getattr(record, "exception", None)
        candidates = [exc, context_exc]
        if not any(isinstance(e, OSError) and e.errno in _EXHAUSTION_ERRNOS for e in candidates):
            if "out of system resource" not in str(record.msg):
                return True
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return False
        self._last = now
        if self._suppressed:
            record.msg = f"{record.msg} ({self._suppressed} more like it not logged)"
            self._suppressed = 0
        record.exc_info = None  # one line, not a traceback per accept
        record.exc_text = None
        return True


_installed: dict[str, _ExhaustionFilter] = {}


def quiet_descriptor_exhaustion(interval: float = 10.0) -> None:
    """Install (once per process) the filter on the loggers that report failed accepts."""
    if "filter" in _installed:
        return
    flt = _ExhaustionFilter(interval)
    _installed["filter"] = flt
    for name in ("asyncio", "aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal"):
        logging.getLogger(name).addFilter(flt)
