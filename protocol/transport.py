"""The one module of ``protocol`` that does I/O: the handshake and the channel over websockets.

Two halves share one base:

- ``CoreChannel`` is the core's end: it sends ``Request``s and yields each request's ``Output``
  chunks in order, then its ``Result``.
- ``PeripheryChannel`` is the agent's end: it runs a handler per request in its own cancel
  scope, streams what the handler writes, and answers ``Cancel`` by cancelling that scope.

Both ends send a ``Heartbeat`` every ``heartbeat_interval`` and declare the peer dead when
nothing at all arrived for two intervals. Who dialed does not matter after the handshake:
``dial`` and ``accept`` give an authenticated websocket and the peer, and either channel runs
over either kind of websocket.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, cast

import aiohttp
import anyio
import anyio.abc
import msgspec
from aiohttp import web

from protocol import codec
from protocol.exceptions import (
    ChannelClosed,
    ChannelError,
    FrameError,
    HandshakeFailed,
    RemoteError,
    RequestRejected,
)
from protocol.handshake import (
    Authorizer,
    ClientHandshake,
    ConnectionBinding,
    Peer,
    ServerHandshake,
)
from protocol.keys import PrivateKey, PublicKey
from protocol.messages import (
    Cancel,
    Command,
    CoreFrame,
    DockerEvents,
    Error,
    ErrorCode,
    ErrorInfo,
    Heartbeat,
    Output,
    OutputView,
    PeripheryFrameView,
    Request,
    Result,
    ResultValue,
    Role,
    Stream,
)
from protocol.ratelimit import AuthFailureLimiter

log = logging.getLogger(__name__)

AUTH_FAILED_CLOSE_CODE = 4401
"""Every authentication failure closes with this code and ``AUTH_FAILED_REASON``."""
AUTH_FAILED_REASON = b"authentication failed"
BAD_FRAMES_CLOSE_CODE = 1002  # protocol error
DEAD_PEER_CLOSE_CODE = 1001  # going away
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OUTPUT_CHUNK_BYTES = 1024 * 1024
_FRAME_HEADROOM = 96  # room for an Output frame's header in front of its data
_WATCHDOG_PERIOD = 1.0  # how often stuck sends are looked for, at least
_FLUSH_FRAMES = 16  # a batch this large is sent at once by whoever completed it
_OUTBOX_FRAMES = 1024  # frames waiting to be written before senders wait
_OUTBOX_BYTES = 8 * 1024 * 1024  # bytes waiting to be written before senders wait


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """Limits and named timeouts of one channel, with finite defaults."""

    max_frame_bytes: int = codec.DEFAULT_MAX_FRAME_BYTES
    handshake_timeout: float = 5.0  # from the upgrade to the last handshake message
    connect_timeout: float = 10.0  # TCP + TLS + websocket upgrade, when dialing
    heartbeat_interval: float = 10.0  # the peer is dead after two intervals of silence
    send_timeout: float = 30.0  # one frame that cannot be written in this: the peer is dead
    close_timeout: float = 2.0  # waiting for the peer's close frame
    max_in_flight: int = 64  # requests running at once on one channel
    max_bad_frames: int = 3  # malformed frames tolerated before the connection closes
    output_buffer: int = 256  # output chunks buffered per request on the core side


class WebSocket(Protocol):
    """What a channel needs of an aiohttp websocket, client or server side."""

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None: ...

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage: ...  # noqa: ASYNC109

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...

    @property
    def closed(self) -> bool: ...


# --------------------------------------------------------------------------------- handshakes


def accept_key_for(sec_websocket_key: str) -> str:
    digest = hashlib.sha1((sec_websocket_key + _WS_GUID).encode()).digest()  # noqa: S324
    return base64.b64encode(digest).decode()


def cert_sha256_from_pem(pem: bytes) -> bytes:
    """SHA-256 of the first certificate's DER in a PEM file's contents."""
    text = pem.decode("ascii", "replace")
    begin = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(text[begin:end])).digest()


async def _receive_handshake_bytes(ws: WebSocket) -> bytes:
    msg = await ws.receive()
    if msg.type is aiohttp.WSMsgType.BINARY:
        data: bytes = msg.data
        return data
    if msg.type is aiohttp.WSMsgType.TEXT:
        raise HandshakeFailed("text frame during the handshake")
    raise HandshakeFailed(f"connection ended during the handshake ({msg.type.name})")


async def _close_auth_failed(ws: WebSocket, settings: ChannelSettings) -> None:
    with anyio.move_on_after(settings.close_timeout, shield=True):
        await ws.close(code=AUTH_FAILED_CLOSE_CODE, message=AUTH_FAILED_REASON)


@dataclass
class Acceptor:
    """The listening side's authentication, shared by every connection of one server.

    ``accept`` upgrades an HTTP request to a websocket and runs the handshake within the
    deadline. Any failure — a bad or unknown key, a bad signature, a wrong version, garbage, a
    missed deadline, or a source address over its failure budget — closes the socket with the
    same code and reason, is logged with the peer address, and counts against that address.
    Nothing but handshake messages is decoded before it succeeds.
    """

    private_key: PrivateKey
    role: Role
    authorize: Authorizer
    settings: ChannelSettings = field(default_factory=ChannelSettings)
    tls_cert_sha256: bytes = b""
    software: str = ""
    limiter: AuthFailureLimiter = field(default_factory=AuthFailureLimiter)

    async def accept(self, request: web.Request) -> tuple[web.WebSocketResponse, Peer | None]:
        address = request.remote or "unknown"
        ws = web.WebSocketResponse(
            max_msg_size=self.settings.max_frame_bytes,
            timeout=self.settings.close_timeout,
            autoping=True,
            compress=False,
        )
        try:
            await ws.prepare(request)
        except ConnectionError as exc:  # the peer left during the upgrade
            log.info("connection from %s lost during the upgrade: %s", address, exc)
            return ws, None
        now = anyio.current_time()
        if self.limiter.blocked(address, now):
            log.warning("authentication refused from %s: too many recent failures", address)
            await _close_auth_failed(ws, self.settings)
            return ws, None
        binding = ConnectionBinding(
            accept_key=accept_key_for(request.headers.get("Sec-WebSocket-Key", "")),
            host=request.host,
            path=request.path,
            tls_server_cert_sha256=self.tls_cert_sha256,
        )
        handshake = ServerHandshake(
            private_key=self.private_key,
            role=self.role,
            authorize=self.authorize,
            binding=binding,
            software=self.software,
        )
        try:
            with anyio.fail_after(self.settings.handshake_timeout):
                while not handshake.complete:
                    reply = handshake.receive(await _receive_handshake_bytes(ws))
                    await ws.send_bytes(reply)
        except (HandshakeFailed, TimeoutError, ConnectionError, aiohttp.ClientError) as exc:
            reason = "handshake deadline passed" if isinstance(exc, TimeoutError) else str(exc)
            self.limiter.record_failure(address, anyio.current_time())
            log.warning("authentication failed from %s: %s", address, reason)
            await _close_auth_failed(ws, self.settings)
            return ws, None
        assert handshake.peer is not None
        log.info(
            "authenticated %s %s%s from %s",
            handshake.peer.role.value,
            handshake.peer.public_key.fingerprint(),
            f" ({handshake.peer.name})" if handshake.peer.name else "",
            address,
        )
        return ws, handshake.peer


def _client_binding(ws: aiohttp.ClientWebSocketResponse) -> ConnectionBinding:
    response = ws._response  # the upgrade response: headers we bind to
    sslobj = ws.get_extra_info("ssl_object")
    cert_hash = b""
    if sslobj is not None:
        der = sslobj.getpeercert(binary_form=True)
        if der:
            cert_hash = hashlib.sha256(der).digest()
    return ConnectionBinding(
        accept_key=response.headers.get("Sec-WebSocket-Accept", ""),
        host=response.request_info.headers.get("Host", ""),
        path=response.request_info.url.raw_path,
        tls_server_cert_sha256=cert_hash,
    )


class DialFailed(ChannelError):
    """Could not connect, or could not authenticate, to the listener."""


async def dial(
    session: aiohttp.ClientSession,
    url: str,
    *,
    private_key: PrivateKey,
    role: Role,
    trusted_keys: Collection[PublicKey],
    name: str = "",
    settings: ChannelSettings = ChannelSettings(),
    ssl_context: ssl.SSLContext | bool = False,
    software: str = "",
) -> tuple[aiohttp.ClientWebSocketResponse, Peer]:
    """Connect to ``url`` and authenticate both ways. Raises ``DialFailed`` with a reason.

    With ``ssl_context=False`` a ``wss://`` certificate is not checked against a CA: the
    handshake binds the certificate the dialer saw, so a stand-in certificate makes the
    listener's signature fail. Pass a context to check it as well.
    """
    try:
        with anyio.fail_after(settings.connect_timeout):
            ws = await session.ws_connect(
                url,
                max_msg_size=settings.max_frame_bytes,
                autoping=True,
                compress=0,
                ssl=ssl_context,
                timeout=aiohttp.ClientWSTimeout(ws_close=settings.close_timeout),
            )
    except TimeoutError as exc:
        raise DialFailed(
            f"cannot connect to {url}: no answer in {settings.connect_timeout}s"
        ) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise DialFailed(f"cannot connect to {url}: {exc}") from exc
    handshake = ClientHandshake(
        private_key=private_key,
        role=role,
        trusted_server_keys=trusted_keys,
        binding=_client_binding(ws),
        name=name,
        software=software,
    )
    try:
        with anyio.fail_after(settings.handshake_timeout):
            await ws.send_bytes(handshake.start())
            while not handshake.complete:
                data = await _receive_handshake_bytes(ws)
                reply = handshake.receive(data)
                if reply is not None:
                    await ws.send_bytes(reply)
    except HandshakeFailed as exc:
        await _close_auth_failed(ws, settings)
        if ws.close_code == AUTH_FAILED_CLOSE_CODE:
            raise DialFailed(f"{url} refused our authentication") from exc
        raise DialFailed(f"authentication with {url} failed: {exc}") from exc
    except TimeoutError as exc:
        await _close_auth_failed(ws, settings)
        raise DialFailed(f"authentication with {url} timed out") from exc
    except (aiohttp.ClientError, OSError) as exc:
        await _close_auth_failed(ws, settings)
        raise DialFailed(f"connection to {url} failed during authentication: {exc}") from exc
    assert handshake.peer is not None
    return ws, handshake.peer


# ----------------------------------------------------------------------------------- channels


class _Wakeup:
    """A one-waiter wakeup on a bare event-loop future: the hot path of every request.

    anyio's ``Event`` costs several microseconds to create; the transport is bound to asyncio
    through aiohttp anyway. Cancellation works as for any await. A ``set`` with nobody waiting
    is dropped, so waiters re-check their condition in a loop before waiting.
    """

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        self._future = future = asyncio.get_running_loop().create_future()
        try:
            await future
        finally:
            self._future = None

    def set(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)


class _ChannelBase:
    """Heartbeats, the dead-peer watchdog, bounded sends and the close of one websocket."""

    _close_code = DEAD_PEER_CLOSE_CODE

    def __init__(self, ws: WebSocket, peer: Peer, settings: ChannelSettings) -> None:
        self.ws = ws
        self.peer = peer
        self.settings = settings
        self._last_rx = time.monotonic()
        self._sends_pending = 0
        self._send_progress = self._last_rx
        self._outbox: list[bytes | memoryview] = []
        self._outbox_bytes = 0
        self._writer_busy = False
        self._writer_wake = _Wakeup()
        self._outbox_space = _Wakeup()
        self._closed = anyio.Event()
        self._is_closed = False  # mirrors _closed, cheaper to test on every frame
        self._bad_frames = 0
        self.close_reason = ""

    @property
    def closed(self) -> bool:
        return self._is_closed

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _coalesce(self) -> bool:
        """Whether frames should gather in the outbox rather than go out one by one."""
        return False

    async def _send(self, data: bytes | memoryview) -> None:
        """Send one encoded frame, directly or through the outbox.

        With one request in flight a frame goes straight to the socket (lowest latency). With
        several, frames gather in the outbox and the writer task sends what gathered as one
        websocket message, a msgpack array of frames (fewer syscalls and wakeups per frame).
        Order is kept: once anything waits in the outbox, every frame goes through it.
        """
        if self._outbox or self._writer_busy or self._coalesce():
            await self._enqueue(data)
        else:
            await self._send_now(data)

    async def _enqueue(self, data: bytes | memoryview) -> None:
        if self._is_closed or self.ws.closed:
            raise ChannelClosed(self.close_reason or "the connection is closed")
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        if len(self._outbox) >= _FLUSH_FRAMES and not self._writer_busy:
            # Send a full batch from here rather than waiting for the writer: the peer starts
            # on it while this side prepares the next one (a pipeline, not lock-step batches).
            frames, self._outbox, self._outbox_bytes = self._outbox, [], 0
            await self._send_now(codec.batch(frames))
            return
        self._writer_wake.set()
        while len(self._outbox) >= _OUTBOX_FRAMES or self._outbox_bytes >= _OUTBOX_BYTES:
            await self._outbox_space.wait()
            if self._is_closed:
                raise ChannelClosed(self.close_reason or "the connection is closed")

    async def _writer(self) -> None:
        """Drain the outbox, a batch per websocket message; ends when a send fails."""
        limit = self.settings.max_frame_bytes - 16
        while True:
            while not self._outbox:
                await self._writer_wake.wait()
            frames, self._outbox, self._outbox_bytes = self._outbox, [], 0
            self._writer_busy = True
            self._outbox_space.set()
            try:
                start = 0
                while start < len(frames):
                    end, size = start, 0
                    while end < len(frames) and (end == start or size + len(frames[end]) <= limit):
                        size += len(frames[end])
                        end += 1
                    if end - start == 1:
                        await self._send_now(frames[start])
                    else:
                        await self._send_now(codec.batch(frames[start:end]))
                    start = end
            finally:
                self._writer_busy = False

    async def _send_now(self, data: bytes | memoryview) -> None:
        # No cancel scope per frame (they cost more than the send): the watchdog in
        # ``_heartbeat`` closes the socket when a send makes no progress for send_timeout.
        ws = self.ws
        if ws.closed:
            raise ChannelClosed(self.close_reason or "the connection is closed")
        if not self._sends_pending:
            self._send_progress = time.monotonic()
        self._sends_pending += 1
        try:
            # aiohttp frames any bytes-like object (it only takes len() and writes it).
            await ws.send_bytes(cast(bytes, data))
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            raise ChannelClosed(f"send failed: {exc}") from exc
        finally:
            self._sends_pending -= 1
            self._send_progress = time.monotonic()

    async def _run_writer(self, tg: anyio.abc.TaskGroup) -> None:
        try:
            await self._writer()
        except ChannelClosed as exc:
            self.close_reason = self.close_reason or str(exc)
        tg.cancel_scope.cancel()

    async def _heartbeat(self) -> None:
        """Send heartbeats; return when the peer went silent or a send is stuck."""
        interval = self.settings.heartbeat_interval
        next_send = time.monotonic()
        for seq in itertools.count():
            now = time.monotonic()
            if now - self._last_rx >= 2 * interval:
                self.close_reason = f"no frame from the peer for {2 * interval:g}s"
                log.warning("peer %s is dead: %s", describe(self.peer), self.close_reason)
                return
            if self._sends_pending and now - self._send_progress >= self.settings.send_timeout:
                self.close_reason = f"a send made no progress for {self.settings.send_timeout:g}s"
                log.warning("peer %s is stuck: %s", describe(self.peer), self.close_reason)
                return
            if now >= next_send:
                await self._send(codec.encode(Heartbeat(seq=seq)))
                next_send = now + interval
            wake = min(next_send, self._last_rx + 2 * interval, now + _WATCHDOG_PERIOD)
            await anyio.sleep(max(0.0, wake - now))

    async def _receive_frames(self) -> AsyncIterator[bytes]:
        while True:
            msg = await self.ws.receive()
            self._last_rx = time.monotonic()
            if msg.type is aiohttp.WSMsgType.BINARY:
                yield msg.data
            elif msg.type is aiohttp.WSMsgType.TEXT:
                yield msg.data.encode()  # decodes as garbage: answered as a bad frame
            elif msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                continue
            else:
                self.close_reason = self.close_reason or f"connection ended ({msg.type.name})"
                return

    async def _bad_frame(self, exc: FrameError) -> bool:
        """Answer a bad frame with a typed error; True when the connection must close."""
        self._bad_frames += 1
        log.warning("bad frame from %s: %s", self.peer.public_key, exc)
        try:
            await self._send(codec.encode(Error(code=ErrorCode.BAD_FRAME, message=str(exc))))
        except ChannelClosed:
            return True
        if self._bad_frames >= self.settings.max_bad_frames:
            self.close_reason = f"{self._bad_frames} bad frames"
            self._close_code = BAD_FRAMES_CLOSE_CODE
            return True
        return False

    async def _shutdown(self) -> None:
        self._is_closed = True
        self._closed.set()
        self._outbox_space.set()
        with anyio.move_on_after(self.settings.close_timeout, shield=True):
            await self.ws.close(code=self._close_code, message=self.close_reason.encode()[:120])

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the channel until the connection ends: the reader, the heartbeat watchdog and
        the writer in one task group; whichever ends first ends the others."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, tg)
                tg.start_soon(self._run_writer, tg)
                task_status.started()
                await self._read(tg)
                tg.cancel_scope.cancel()
        finally:
            self._closing()
            await self._shutdown()

    async def _watch(self, tg: anyio.abc.TaskGroup) -> None:
        try:
            await self._heartbeat()
        except ChannelClosed as exc:
            self.close_reason = str(exc)
        tg.cancel_scope.cancel()

    async def _read(self, tg: anyio.abc.TaskGroup) -> None:
        raise NotImplementedError

    def _closing(self) -> None:
        """Called when the connection ended, before the socket is closed."""

    async def aclose(self, reason: str = "closed by us") -> None:
        self.close_reason = self.close_reason or reason
        self._close_code = 1000
        await self._shutdown()


# ------------------------------------------------------------------------------- core's end


class Call:
    """One request on a ``CoreChannel``: iterate for its output, then read ``result``.

    Output is buffered up to ``ChannelSettings.output_buffer`` chunks; past that the channel's
    reader waits for this call's consumer (backpressure reaches the periphery through TCP).
    """

    __slots__ = (
        "_channel",
        "id",
        "_items",
        "_limit",
        "_waiter",
        "_space",
        "_next_seq",
        "result",
        "_failure",
        "_abandoned",
        "on_events",
    )

    def __init__(self, channel: CoreChannel, request_id: int, buffer: int) -> None:
        self._channel = channel
        self.id = request_id
        self._items: deque[OutputView | Result] = deque()
        self._limit = buffer
        self._waiter = _Wakeup()
        self._space = _Wakeup()
        self._next_seq = 0
        self.result: Result | None = None
        self._failure: ChannelError | None = None
        self._abandoned = False
        self.on_events: Callable[[DockerEvents], None] | None = None

    def __aiter__(self) -> Call:
        return self

    async def __anext__(self) -> OutputView:
        if self.result is not None:
            raise StopAsyncIteration
        items = self._items
        while not items:
            if self._failure is not None:
                raise self._failure
            await self._waiter.wait()
        item = items.popleft()
        if len(items) < self._limit:
            self._space.set()
        if isinstance(item, Result):
            self.result = item
            raise StopAsyncIteration
        return item

    async def wait(self) -> Result:
        """Drain the output and return the result."""
        async for _ in self:
            pass
        assert self.result is not None
        return self.result

    async def cancel(self) -> None:
        """Ask the periphery to cancel; its ``Result`` (``cancelled``) still arrives."""
        if self.result is None and not self._channel.closed:
            await self._channel._send(codec.encode(Cancel(id=self.id)))

    async def _deliver(self, frame: OutputView | Result) -> None:
        if self._abandoned or self._failure is not None:
            return
        if isinstance(frame, OutputView):
            if frame.seq != self._next_seq:
                self._fail(ChannelError(f"output of request {self.id} out of order"))
                return
            self._next_seq += 1
        self._items.append(frame)
        self._waiter.set()
        while len(self._items) >= self._limit and not self._abandoned and self._failure is None:
            await self._space.wait()

    def _fail(self, failure: ChannelError) -> None:
        self._failure = failure
        self._waiter.set()
        self._space.set()

    def _abandon(self) -> None:
        self._abandoned = True
        self._items.clear()
        self._space.set()

    async def __aenter__(self) -> Call:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.result is None and self._failure is None and not self._channel.closed:
            self._abandon()
            with anyio.move_on_after(self._channel.settings.close_timeout, shield=True):
                try:
                    await self.cancel()
                except ChannelClosed:
                    pass
        self._channel._forget(self)


class CoreChannel(_ChannelBase):
    """The core's end of a channel: start requests, read their output and results."""

    def __init__(self, ws: WebSocket, peer: Peer, settings: ChannelSettings) -> None:
        super().__init__(ws, peer, settings)
        self._decoder = codec.periphery_frame_decoder(settings.max_frame_bytes)
        self._ids = itertools.count(1)
        self._calls: dict[int, Call] = {}
        self._slots = anyio.Semaphore(settings.max_in_flight)

    def _closing(self) -> None:
        for call in list(self._calls.values()):
            call._fail(ChannelClosed(self.close_reason or "the channel closed"))

    async def _read(self, tg: anyio.abc.TaskGroup) -> None:
        async for data in self._receive_frames():
            try:
                frames = self._decoder.decode(data)
            except FrameError as exc:
                if await self._bad_frame(exc):
                    return
                continue
            for frame in frames:
                await self._dispatch(frame)

    async def _dispatch(self, frame: PeripheryFrameView) -> None:
        match frame:
            case OutputView(id=request_id) | Result(id=request_id):
                call = self._calls.get(request_id)
                if call is not None:
                    await call._deliver(frame)
            case DockerEvents(id=request_id):
                call = self._calls.get(request_id)
                if call is not None and call.on_events is not None:
                    call.on_events(frame)
            case Heartbeat(reply=False, seq=seq):
                await self._send(codec.encode(Heartbeat(seq=seq, reply=True)))
            case Heartbeat():
                pass
            case Error(request_id=None):
                log.warning(
                    "periphery %s reports: %s: %s",
                    self.peer.public_key,
                    frame.code.value,
                    frame.message,
                )
            case Error(request_id=int(request_id)):
                call = self._calls.get(request_id)
                if call is not None:
                    call._fail(RemoteError(frame.code, frame.message))

    def _coalesce(self) -> bool:
        return len(self._calls) > 1

    def call(
        self, command: Command, on_events: Callable[[DockerEvents], None] | None = None
    ) -> _CallContext:
        """``async with channel.call(cmd) as call``: start a request; cancel it on early exit.
        ``on_events`` gets the request's ``DockerEvents`` frames, in the reader's task: it must
        not block."""
        return _CallContext(self, command, on_events)

    async def _start(
        self, command: Command, on_events: Callable[[DockerEvents], None] | None = None
    ) -> Call:
        if self.closed:
            raise ChannelClosed(self.close_reason or "the channel is closed")
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            await self._slots.acquire()
        request_id = next(self._ids)
        call = Call(self, request_id, self.settings.output_buffer)
        call.on_events = on_events
        self._calls[request_id] = call
        try:
            await self._send(codec.encode(Request(id=request_id, command=command)))
        except BaseException:
            self._forget(call)
            raise
        return call

    def _forget(self, call: Call) -> None:
        if self._calls.pop(call.id, None) is not None:
            self._slots.release()

    async def request(self, command: Command) -> tuple[Result, list[OutputView]]:
        """Run a command to its end; return its result and all its output."""
        call = await self._start(command)
        output: list[OutputView] = []
        try:
            async for chunk in call:
                output.append(chunk)
        except BaseException as exc:
            await call.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._forget(call)
        assert call.result is not None
        return call.result, output


class _CallContext:
    def __init__(
        self,
        channel: CoreChannel,
        command: Command,
        on_events: Callable[[DockerEvents], None] | None = None,
    ) -> None:
        self._channel = channel
        self._command = command
        self._on_events = on_events
        self._call: Call | None = None

    async def __aenter__(self) -> Call:
        self._call = await self._channel._start(self._command, self._on_events)
        return self._call

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._call is not None
        await self._call.__aexit__(exc_type, exc, tb)


def raise_for_result(result: Result) -> int:
    """The exit code of a result, or ``RemoteError`` for a typed error."""
    if result.error is not None:
        if result.error.code in (ErrorCode.BUSY, ErrorCode.DUPLICATE_ID):
            raise RequestRejected(result.error.code, result.error.message)
        raise RemoteError(result.error.code, result.error.message)
    return result.exit_code if result.exit_code is not None else 0


# -------------------------------------------------------------------------- periphery's end


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a handler returns: an exit code, a typed error, or a structured value."""

    exit_code: int | None = None
    error: ErrorInfo | None = None
    value: ResultValue | None = None


class OutputWriter:
    """Streams one request's output to the core, numbering chunks from 0 without gaps."""

    __slots__ = ("_channel", "_id", "_seq")

    def __init__(self, channel: PeripheryChannel, request_id: int) -> None:
        self._channel = channel
        self._id = request_id
        self._seq = 0

    async def write(self, stream: Stream, data: bytes) -> None:
        for start in range(0, len(data), OUTPUT_CHUNK_BYTES):
            chunk = data[start : start + OUTPUT_CHUNK_BYTES]
            frame = Output(id=self._id, seq=self._seq, stream=stream, data=chunk)
            self._seq += 1
            await self._channel._send(codec.encode(frame))

    async def stdout(self, data: bytes) -> None:
        await self.write(Stream.STDOUT, data)

    async def stderr(self, data: bytes) -> None:
        await self.write(Stream.STDERR, data)

    async def events(self, frame: DockerEvents) -> None:
        """Send a ``DockerEvents`` frame for this request (its ``id`` is set here)."""
        await self._channel._send(codec.encode(msgspec.structs.replace(frame, id=self._id)))

    def chunk_buffer(self, size: int) -> tuple[bytearray, memoryview]:
        """A fresh buffer for one chunk of up to ``size`` bytes and the view to fill (e.g. with
        ``os.readv``); ``send_chunk`` then frames it in place, without copying the data."""
        size = min(size, OUTPUT_CHUNK_BYTES)
        buffer = bytearray(_FRAME_HEADROOM + size)
        return buffer, memoryview(buffer)[_FRAME_HEADROOM:]

    async def send_chunk(self, stream: Stream, buffer: bytearray, length: int) -> None:
        """Send the first ``length`` bytes of a ``chunk_buffer`` as one ``Output`` frame.

        The frame is the msgpack of ``Output(..., data=b"")`` with its empty ``bin 8`` replaced
        by a ``bin 32`` header, written into the headroom in front of the data. The buffer must
        not be touched afterwards (the transport may keep a reference to it).
        """
        if length <= 0:
            return
        empty = codec.encode(Output(id=self._id, seq=self._seq, stream=stream, data=b""))
        head = empty[:-2] + b"\xc6" + length.to_bytes(4, "big")
        start = _FRAME_HEADROOM - len(head)
        buffer[start:_FRAME_HEADROOM] = head
        self._seq += 1
        await self._channel._send(memoryview(buffer)[start : _FRAME_HEADROOM + length])


class Handler(Protocol):
    """What a ``PeripheryChannel`` runs requests with."""

    def inline(self, command: Command) -> Outcome | None:
        """The outcome of a command answered at once without waiting (no task), else None."""
        ...

    async def __call__(self, command: Command, out: OutputWriter) -> Outcome:
        """Run one command in its own task; cancelled (its scope) when the core cancels."""
        ...


class PeripheryChannel(_ChannelBase):
    """The agent's end: run a handler per request, stream output, obey ``Cancel``."""

    def __init__(
        self, ws: WebSocket, peer: Peer, settings: ChannelSettings, handler: Handler
    ) -> None:
        super().__init__(ws, peer, settings)
        self._decoder = codec.core_frame_decoder(settings.max_frame_bytes)
        self._handler = handler
        self._active: dict[int, anyio.CancelScope] = {}
        self._in_batch = False

    def _coalesce(self) -> bool:
        return self._in_batch or len(self._active) > 1

    async def _read(self, tg: anyio.abc.TaskGroup) -> None:
        async for data in self._receive_frames():
            try:
                frames = self._decoder.decode(data)
            except FrameError as exc:
                if await self._bad_frame(exc):
                    return
                continue
            self._in_batch = len(frames) > 1
            for frame in frames:
                await self._dispatch(tg, frame)
            self._in_batch = False

    async def _dispatch(self, tg: anyio.abc.TaskGroup, frame: CoreFrame) -> None:
        match frame:
            case Request():
                await self._admit(tg, frame)
            case Cancel(id=request_id):
                scope = self._active.get(request_id)
                if scope is not None:
                    scope.cancel()
            case Heartbeat(reply=False, seq=seq):
                await self._send(codec.encode(Heartbeat(seq=seq, reply=True)))
            case Heartbeat():
                pass
            case Error():
                log.warning("core reports: %s: %s", frame.code.value, frame.message)

    async def _admit(self, tg: anyio.abc.TaskGroup, request: Request) -> None:
        refusal: ErrorInfo | None = None
        if request.id in self._active:
            refusal = ErrorInfo(ErrorCode.DUPLICATE_ID, f"request {request.id} is in flight")
        elif len(self._active) >= self.settings.max_in_flight:
            refusal = ErrorInfo(
                ErrorCode.BUSY, f"{self.settings.max_in_flight} requests already in flight"
            )
        if refusal is not None:
            await self._send(codec.encode(Result(id=request.id, error=refusal)))
            return
        outcome = self._handler.inline(request.command)
        if outcome is not None:
            await self._send(codec.encode(_result(request.id, outcome)))
            return
        scope = anyio.CancelScope()
        self._active[request.id] = scope
        tg.start_soon(self._serve, request, scope)

    async def _serve(self, request: Request, scope: anyio.CancelScope) -> None:
        outcome = Outcome(error=ErrorInfo(ErrorCode.INTERNAL, "the handler did not finish"))
        try:
            with scope:
                outcome = await self._handler(request.command, OutputWriter(self, request.id))
            if scope.cancelled_caught:
                outcome = Outcome(
                    error=ErrorInfo(ErrorCode.CANCELLED, "cancelled; its processes were killed")
                )
        except ChannelClosed:
            return
        except Exception as exc:  # a bug in a handler must not take the channel down
            log.exception("handler failed on request %s", request.id)
            outcome = Outcome(error=ErrorInfo(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))
        finally:
            self._active.pop(request.id, None)
        try:
            await self._send(codec.encode(_result(request.id, outcome)))
        except ChannelClosed:
            pass


def _result(request_id: int, outcome: Outcome) -> Result:
    return Result(
        id=request_id, exit_code=outcome.exit_code, error=outcome.error, value=outcome.value
    )


def describe(peer: Peer) -> str:
    name = f" {peer.name}" if peer.name else ""
    return f"{peer.role.value}{name} {peer.public_key.fingerprint()}"


def session_kwargs() -> dict[str, Any]:
    """Defaults for the aiohttp client session the dialers share."""
    return {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=10)}
