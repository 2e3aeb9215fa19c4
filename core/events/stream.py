"""``GET /ws/events``: the event stream as a websocket.

Query parameters (all optional)::

    since=ID          replay the events after ID from the store, then go live (no gap, no dup)
    kind=K[,K...]     only these kinds; a family name matches its members (deploy, docker)
    resource=R[,...]  only these resources (stack:web, server:nas); stack=NAME is stack:NAME
    format=json       one JSON object per text message (default); msgpack: binary messages,
                      each a msgpack array of one or more events
    lag=report        when the subscriber's queue overflows: a "lagged" message naming the ids
                      it missed, then the stream goes on (default); lag=close: close with 1013

Authentication: ``Authorization: Bearer TOKEN``, or the dashboard's session cookie (checked by
the ``session_ok`` given), or (browsers cannot set headers on a websocket) the token as the first
message, as ``{"token": "..."}`` or the bare token, within ``AUTH_DEADLINE`` seconds; viewer
tokens may read the stream too. A request with an ``Origin`` header is refused unless the origin
is the core's own (the dashboard's page) or in the core's ``event_origins``.

Failures: 401 before the upgrade, close code 4401 after; past 20
failures a minute from one address a wrong token gets 429 until the window has room; a right
token always passes (the address may be shared: NAT, a proxy).

Messages besides events, with a ``control`` key instead of an ``id``::

    {"control": "live", "last": ID}                 first (after the replay, if any): events
                                                    after ID follow, live
    {"control": "lagged", "first": A, "last": B, "count": N}   missed; resume with since=A-1
    {"control": "expired", "first": A, "last": B}   pruned by retention before it could replay
"""

from __future__ import annotations

import hmac
import logging
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import msgspec
from aiohttp import WSMsgType, web

from core.api.http import error_response
from core.events.bus import EventBus, Subscriber, Subscription
from core.events.model import Event, Filter
from protocol import codec
from protocol.ratelimit import AuthFailureLimiter

log = logging.getLogger(__name__)

AUTH_DEADLINE = 5.0  # seconds for the first-message token
SEND_TIMEOUT = 30.0  # a send that makes no progress for this long ends the subscription
CLOSE_TIMEOUT = 1.0  # a polite close that takes longer is given up (the socket is aborted)
BATCH_EVENTS = 256  # events per msgpack message at most
MAX_CLIENT_MESSAGE = 4096  # bytes: clients only ever send a token
TRY_AGAIN_LATER = 1013
AUTH_FAILED = 4401

_json = msgspec.json.Encoder()
_mp = msgspec.msgpack.Encoder()


class BadQuery(ValueError):
    pass


def _drop(request: web.Request) -> None:
    """Close the connection now, with a reset: what the kernel still holds to send (megabytes,
    for a subscriber that stopped reading) is discarded instead of lingering."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class StreamOptions(msgspec.Struct, frozen=True):
    since: int | None
    filter: Filter
    msgpack: bool
    close_on_lag: bool


def parse_query(query: Any) -> StreamOptions:
    """The stream's options from the query string; ``BadQuery`` names the parameter."""
    since: int | None = None
    raw = query.get("since")
    if raw is not None:
        try:
            since = int(raw)
        except ValueError:
            raise BadQuery(f"since={raw!r}: must be an event id (an integer >= 0)") from None
        if since < 0:
            raise BadQuery(f"since={raw!r}: must be >= 0")
    kinds = tuple(k for v in query.getall("kind", []) for k in v.split(",") if k)
    resources = [r for v in query.getall("resource", []) for r in v.split(",") if r]
    resources += [f"stack:{s}" for v in query.getall("stack", []) for s in v.split(",") if s]
    fmt = query.get("format", "json")
    if fmt not in ("json", "msgpack"):
        raise BadQuery(f"format={fmt!r}: use json or msgpack")
    lag = query.get("lag", "report")
    if lag not in ("report", "close"):
        raise BadQuery(f"lag={lag!r}: use report or close")
    return StreamOptions(
        since=since,
        filter=Filter(kinds=kinds, resources=tuple(resources)),
        msgpack=fmt == "msgpack",
        close_on_lag=lag == "close",
    )


def _own_origin(request: web.Request, origin: str) -> bool:
    """The page's origin is the core's own (the dashboard at ``/``): its host and port are the
    ones the browser connected to."""
    return urlsplit(origin).netloc.lower() == request.host.lower()


def token_ok(given: str, tokens: Sequence[str]) -> bool:
    ok = False
    raw = given.strip().encode()
    for t in tokens:  # every token, constant time each
        ok |= hmac.compare_digest(raw, t.encode())
    return ok and bool(raw)


def bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


class EventStream:
    """The handler; one per app."""

    def __init__(
        self,
        bus: EventBus,
        tokens: Sequence[str],
        origins: Sequence[str],
        queue: int,
        limiter: AuthFailureLimiter | None = None,
        send_timeout: float = SEND_TIMEOUT,
        session_ok: Callable[[web.Request], bool] | None = None,
    ) -> None:
        self.session_ok = session_ok
        self.send_timeout = send_timeout
        self.bus = bus
        self.tokens = list(tokens)
        self.origins = set(origins)
        self.queue = queue
        # Wrong tokens per address: past the limit a wrong one gets 429; a right one passes.
        self.limiter = limiter or AuthFailureLimiter()

    def _failed(self, request: web.Request) -> None:
        address = request.remote or "unknown"
        log.warning("events: authentication failed from %s", address)
        self.limiter.record_failure(address, time.monotonic())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            options = parse_query(request.query)
        except BadQuery as exc:
            return error_response(400, "bad_request", str(exc))
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self.origins and not _own_origin(request, origin):
            log.warning("events: refused origin %r from %s", origin, request.remote)
            return error_response(
                403, "origin_not_allowed", "this Origin is not in the core's event_origins"
            )
        header = bearer(request)
        if header is not None and not token_ok(header, self.tokens):
            # A valid token always passes; only wrong ones count, and get 429 past the limit.
            over = self.limiter.blocked(request.remote or "unknown", time.monotonic())
            self._failed(request)
            if over:
                return error_response(
                    429, "too_many_failures", "too many failed logins from here; try again later"
                )
            return error_response(401, "unauthorized", "missing or wrong bearer token")
        by_cookie = header is None and self.session_ok is not None and self.session_ok(request)
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_CLIENT_MESSAGE)
        await ws.prepare(request)
        if header is None and not by_cookie and not await self._first_message_token(ws):
            self._failed(request)
            await ws.close(code=AUTH_FAILED, message=b"authentication failed")
            return ws
        with self.bus.subscribe(
            options.filter,
            since=options.since,
            limit=self.queue,
            close_on_lag=options.close_on_lag,
        ) as subscription:
            stuck = False
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read_until_closed, ws, tg.cancel_scope)
                try:
                    stuck = await self._send_all(ws, subscription, options.msgpack)
                except (ConnectionError, TimeoutError) as exc:
                    log.info("events: subscriber %s gone: %s", subscription.subscriber.id, exc)
                    stuck = True
                tg.cancel_scope.cancel()
        if not ws.closed and not stuck:
            with anyio.move_on_after(CLOSE_TIMEOUT):
                await ws.close()
        if stuck or not ws.closed:
            # A subscriber that does not read cannot be closed politely (the close frame waits
            # behind what it did not read): drop the connection, and its kernel buffers.
            _drop(request)
        return ws

    async def _first_message_token(self, ws: web.WebSocketResponse) -> bool:
        try:
            msg = await ws.receive(timeout=AUTH_DEADLINE)
        except TimeoutError:
            return False
        if msg.type is not WSMsgType.TEXT:
            return False
        text = str(msg.data)
        if text.lstrip().startswith("{"):
            try:
                value = msgspec.json.decode(text)
            except msgspec.DecodeError:
                return False
            text = str(value.get("token", "")) if isinstance(value, dict) else ""
        return token_ok(text, self.tokens)

    async def _read_until_closed(self, ws: web.WebSocketResponse, scope: anyio.CancelScope) -> None:
        async for _ in ws:  # clients have nothing more to say; this notices them leave
            pass
        scope.cancel()

    async def _send_all(self, ws: web.WebSocketResponse, sub: Subscription, mp: bool) -> bool:
        """Send until the subscription ends; True when it ended because the subscriber does
        not keep up (its socket is then aborted)."""
        async def send(events: list[Event]) -> None:
            with anyio.fail_after(self.send_timeout):
                if mp:
                    await ws.send_bytes(codec.batch([e.msgpack() for e in events]))
                else:
                    for e in events:
                        await ws.send_frame(e.json(), WSMsgType.TEXT)

        async def control(message: dict[str, Any]) -> None:
            with anyio.fail_after(self.send_timeout):
                if mp:
                    await ws.send_bytes(_mp.encode(message))
                else:
                    await ws.send_frame(_json.encode(message), WSMsgType.TEXT)

        async for batch in sub.replay():
            await send(batch)
        if sub.expired is not None:
            await control({"control": "expired", "first": sub.expired[0], "last": sub.expired[1]})
        # Always: a client that started without ``since`` learns where it stands.
        await control({"control": "live", "last": sub.live_from})
        subscriber: Subscriber = sub.subscriber
        while True:
            if subscriber.overflowed:
                log.info("events: subscriber %s fell behind; closing (1013)", subscriber.id)
                with anyio.move_on_after(CLOSE_TIMEOUT):
                    await ws.close(code=TRY_AGAIN_LATER, message=b"fell behind; resume with since")
                return not ws.closed
            batch = subscriber.take(BATCH_EVENTS if mp else 16)
            if batch:
                await send(batch)
                continue
            lagged = subscriber.take_lagged()
            if lagged is not None:
                await control(
                    {
                        "control": "lagged",
                        "first": lagged.first,
                        "last": lagged.last,
                        "count": lagged.count,
                    }
                )
                continue
            await subscriber.wait()
