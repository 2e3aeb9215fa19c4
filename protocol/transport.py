"""The channel's websocket drivers: thin I/O around the state machines of ``protocol.channel``.

Two halves share one base:

- ``CoreChannel`` is the core's end: it sends ``Request``s and yields each request's ``Output``
  chunks in order, then its ``Result``.
- ``PeripheryChannel`` is the agent's end: it runs a handler per request in its own cancel
  scope, streams what the handler writes, and answers ``Cancel`` by cancelling that scope.

The state machine seals, frames, batches, numbers and times; the driver moves its bytes over
one websocket (``protocol.connect`` authenticates it first: ``Authenticated`` holds the socket,
the peer and the keys), runs the handlers, and closes. A message that does not open closes the
channel at once, logged with why, and nothing in it runs. Who dialed does not matter after the
handshake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, cast

import aiohttp
import anyio
import anyio.abc

from protocol.channel import (
    BROKEN_CLOSE_CODE,
    NORMAL_CLOSE_CODE,
    BadFrame,
    CancelRequest,
    ChannelSettings,
    ChannelState,
    CoreState,
    PeerError,
    PeripheryState,
    Reply,
    RequestFailed,
    Start,
)
from protocol.connect import (
    AUTH_FAILED_CLOSE_CODE,
    Acceptor,
    Authenticated,
    DialFailed,
    cert_sha256_from_pem,
    dial,
    session_kwargs,
)
from protocol.exceptions import (
    ChannelClosed,
    ChannelError,
    RemoteError,
    RequestRejected,
    SealBroken,
)
from protocol.handshake import Peer
from protocol.messages import (
    Command,
    DockerEvents,
    Error,
    ErrorCode,
    ErrorInfo,
    OutputView,
    Result,
    ResultValue,
    Stream,
)
from protocol.sealing import OVERHEAD

__all__ = [
    "AUTH_FAILED_CLOSE_CODE",
    "Acceptor",
    "Authenticated",
    "Call",
    "ChannelSettings",
    "CoreChannel",
    "DialFailed",
    "Handler",
    "Outcome",
    "OutputWriter",
    "PeripheryChannel",
    "cert_sha256_from_pem",
    "describe",
    "dial",
    "raise_for_result",
    "session_kwargs",
]

log = logging.getLogger(__name__)

_BINARY = aiohttp.WSMsgType.BINARY

OUTPUT_CHUNK_BYTES = 1024 * 1024
_FRAME_HEADROOM = 96  # room for an Output frame's header in front of its data


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


class _WakeupAll:
    """A wakeup for any number of waiters (every task that sends while the outbox is full):
    ``set`` wakes all who wait now. As with ``_Wakeup``, waiters re-check their condition."""

    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] = []

    async def wait(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self._futures.append(future)
        try:
            await future
        finally:
            if future.cancelled() and future in self._futures:  # the waiter was cancelled
                self._futures.remove(future)

    def set(self) -> None:
        futures, self._futures = self._futures, []
        for future in futures:
            if not future.done():
                future.set_result(None)


def _deepen_write_buffer(ws: object, high: int) -> None:
    """Let the socket's writer hold ``high`` bytes before senders wait (asyncio's default is
    64 KiB): a 1 MiB message then goes to the kernel while the next one is read and sealed,
    instead of each send waiting for the previous one to drain. Memory stays bounded by it.
    Reaches into aiohttp's writer (both ends have one); without it, the default stays."""
    transport = getattr(getattr(ws, "_writer", None), "transport", None)
    setter = getattr(transport, "set_write_buffer_limits", None)
    if setter is not None:
        setter(high=high)


class _ChannelBase:
    """Moves one state machine's messages over one websocket; runs its clock; closes it."""

    state: ChannelState

    def __init__(self, conn: Authenticated, settings: ChannelSettings) -> None:
        self.ws = conn.ws
        self.peer = conn.peer
        self.settings = settings
        self._writer_busy = False
        self._writer_wake = _Wakeup()
        self._outbox_space = _WakeupAll()  # every sender that found the outbox full waits
        self._closed = anyio.Event()
        self._is_closed = False  # mirrors _closed, cheaper to test on every frame
        _deepen_write_buffer(conn.ws, settings.write_buffer_bytes)

    @property
    def close_reason(self) -> str:
        return self.state.close_reason

    @property
    def closed(self) -> bool:
        return self._is_closed

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _coalesce(self) -> bool:
        """Whether frames should gather in the outbox rather than go out one by one."""
        return False

    def _closed_error(self) -> ChannelClosed:
        return ChannelClosed(self.state.close_reason or "the connection is closed")

    async def _send(self, frame: bytes | memoryview) -> None:
        """Send one encoded frame, directly or through the outbox.

        With one request in flight a frame goes straight to the socket (lowest latency). With
        several, frames gather in the outbox and the writer task sends what gathered as one
        websocket message, a msgpack array of frames sealed once (fewer syscalls, wakeups and
        seals per frame). Order is kept: once anything waits in the outbox, every frame goes
        through it.
        """
        state = self.state
        if state.outbox or self._writer_busy or self._coalesce():
            if self._is_closed or self.ws.closed:
                raise self._closed_error()
            if state.queue(frame) and not self._writer_busy:
                # Send a full batch from here rather than waiting for the writer: the peer
                # starts on it while this side prepares the next one (a pipeline).
                frames = state.take_outbox()
                await self._send_message(state.pack(frames, 0)[0])
                return
            self._writer_wake.set()
            while state.outbox_full:
                await self._outbox_space.wait()
                if self._is_closed:
                    raise self._closed_error()
        else:
            await self._send_message(frame)

    async def _writer(self) -> None:
        """Drain the outbox, a batch per websocket message; ends when a send fails."""
        state = self.state
        while True:
            while not state.outbox:
                await self._writer_wake.wait()
            frames = state.take_outbox()
            self._writer_busy = True
            self._outbox_space.set()
            try:
                start = 0
                while start < len(frames):
                    message, start = state.pack(frames, start)
                    await self._send_message(message)
            finally:
                self._writer_busy = False

    async def _send_message(
        self, plain: bytes | bytearray | memoryview, room: tuple[bytearray, int] | None = None
    ) -> None:
        # Sealing and aiohttp's write of the frame happen in one step (no await between):
        # messages reach the socket in the order of their counters.
        # No cancel scope per message (they cost more than the send): the clock closes the
        # socket when a send makes no progress for send_timeout.
        # With ``room`` (the buffer ``plain`` views and where it starts in it), the message is
        # sealed where it is: no new buffer, its tag in the room after it.
        ws = self.ws
        if ws.closed or self._is_closed:
            raise self._closed_error()
        state = self.state
        now = time.monotonic()
        state.send_started(now)
        try:
            if room is None:
                await ws.send_bytes(cast(bytes, state.seal(plain)))
            else:
                buffer, start = room
                end = start + len(plain)
                state.seal_in_place(buffer, start, end)
                await ws.send_bytes(cast(bytes, memoryview(buffer)[start : end + OVERHEAD]))
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            state.closing(f"send failed: {exc}")
            raise ChannelClosed(f"send failed: {exc}") from exc
        finally:
            state.send_finished(time.monotonic())

    async def _send_chunk(self, buffer: bytearray, start: int, end: int) -> None:
        """Send ``buffer[start:end]`` (one encoded frame with ``OVERHEAD`` bytes of room after
        it): sealed in place when it goes straight to the socket, else through the outbox."""
        if self.state.outbox or self._writer_busy or self._coalesce():
            await self._send(memoryview(buffer)[start:end])
        else:
            await self._send_message(memoryview(buffer)[start:end], (buffer, start))

    async def _run_writer(self, tg: anyio.abc.TaskGroup) -> None:
        try:
            await self._writer()
        except ChannelClosed as exc:
            self.state.closing(str(exc))
        tg.cancel_scope.cancel()

    async def _clock(self, tg: anyio.abc.TaskGroup) -> None:
        """Send heartbeats; end the channel when the peer went silent or a send is stuck."""
        state = self.state
        try:
            while True:
                now = time.monotonic()
                heartbeat = state.tick(now)
                if heartbeat is not None:
                    await self._send(heartbeat)
                await anyio.sleep(max(0.0, state.next_tick(now) - now))
        except ChannelClosed:
            if state.close_reason:
                log.warning("channel with %s closed: %s", describe(self.peer), state.close_reason)
        tg.cancel_scope.cancel()

    async def _next_message(self) -> bytes | None:
        """The next binary message (a text one too: it does not open, and closes the channel);
        None once the connection ended (the reason noted in the state). A plain coroutine, not
        an async generator: this is on every message's path."""
        state = self.state
        receive = self.ws.receive
        while True:
            msg = await receive()
            kind = msg.type
            if kind is _BINARY:
                data: bytes = msg.data
                return data
            if kind is aiohttp.WSMsgType.TEXT:
                text: str = msg.data
                return text.encode()
            if kind is aiohttp.WSMsgType.PING or kind is aiohttp.WSMsgType.PONG:
                state.activity(time.monotonic())
            elif kind is aiohttp.WSMsgType.CLOSE:
                why = f": {msg.extra}" if msg.extra else ""
                state.closing(f"closed by the {state.peer_what} (code {msg.data}{why})")
                return None
            else:
                extra = f": {msg.data}" if kind is aiohttp.WSMsgType.ERROR else ""
                state.closing(f"connection ended ({kind.name}{extra})")
                return None

    async def _reply_bad_frame(self, event: BadFrame) -> None:
        log.warning("bad frame from %s: %s", describe(self.peer), event.reason)
        await self._send(event.reply)
        if event.fatal:
            raise ChannelClosed(self.state.close_reason)

    async def _read(self, tg: anyio.abc.TaskGroup) -> None:
        raise NotImplementedError

    async def _read_until_broken(self, tg: anyio.abc.TaskGroup) -> None:
        try:
            await self._read(tg)
        except SealBroken as exc:
            log.error(
                "closing the channel with %s: %s; nothing in it was acted on",
                describe(self.peer),
                exc,
            )
        except ChannelClosed as exc:
            log.warning("closing the channel with %s: %s", describe(self.peer), exc)

    async def _shutdown(self) -> None:
        self._is_closed = True
        self._outbox_space.set()
        state = self.state
        try:
            with anyio.move_on_after(self.settings.close_timeout, shield=True):
                await self.ws.close(
                    code=state.close_code, message=state.close_reason.encode()[:120]
                )
        finally:
            self._closed.set()  # after the close frame (and its reason) went out

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the channel until the connection ends: the reader, the clock and the writer in
        one task group; whichever ends first ends the others."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._clock, tg)
                tg.start_soon(self._run_writer, tg)
                task_status.started()
                await self._read_until_broken(tg)
                tg.cancel_scope.cancel()
        finally:
            self._closing()
            await self._shutdown()

    def _closing(self) -> None:
        """Called when the connection ended, before the socket is closed."""

    async def aclose(self, reason: str = "closed by us") -> None:
        self.state.closing(reason, NORMAL_CLOSE_CODE)
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
            await self._channel._send(self._channel.state.cancel(self.id))

    def _deliver(self, frame: OutputView | Result) -> bool:
        """Queue a frame for the consumer; False when the queue is full (the reader then waits
        with ``_wait_for_space``, which is how backpressure reaches the periphery)."""
        if self._abandoned or self._failure is not None:
            return True
        self._items.append(frame)
        self._waiter.set()
        return len(self._items) < self._limit

    async def _wait_for_space(self) -> None:
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

    state: CoreState

    def __init__(self, conn: Authenticated, settings: ChannelSettings) -> None:
        super().__init__(conn, settings)
        self.state = CoreState(conn.keys, settings, time.monotonic())
        self._calls: dict[int, Call] = {}
        self._slots = anyio.Semaphore(settings.max_in_flight)

    def _closing(self) -> None:
        for call in list(self._calls.values()):
            call._fail(ChannelClosed(self.state.close_reason or "the channel closed"))

    async def _read(self, tg: anyio.abc.TaskGroup) -> None:
        state, calls, next_message = self.state, self._calls, self._next_message
        while (data := await next_message()) is not None:
            for event in state.receive(data, time.monotonic()):
                match event:
                    case OutputView(id=request_id) | Result(id=request_id):
                        call = calls.get(request_id)
                        if call is not None and not call._deliver(event):
                            await call._wait_for_space()
                    case DockerEvents(id=request_id):
                        call = calls.get(request_id)
                        if call is not None and call.on_events is not None:
                            call.on_events(event)
                    case Reply(frame=frame):
                        await self._send(frame)
                    case RequestFailed(request_id=request_id, reason=reason):
                        call = calls.get(request_id)
                        if call is not None:
                            call._fail(ChannelError(reason))
                    case Error(request_id=None):
                        log.warning(
                            "periphery %s reports: %s: %s",
                            describe(self.peer),
                            event.code.value,
                            event.message,
                        )
                    case Error(request_id=int(request_id)):
                        call = calls.get(request_id)
                        if call is not None:
                            call._fail(RemoteError(event.code, event.message))
                    case BadFrame():
                        await self._reply_bad_frame(event)

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
            raise self._closed_error()
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            await self._slots.acquire()
        request_id, frame = self.state.request(command)
        call = Call(self, request_id, self.settings.output_buffer)
        call.on_events = on_events
        self._calls[request_id] = call
        try:
            await self._send(frame)
        except BaseException:
            self._forget(call)
            raise
        return call

    def _forget(self, call: Call) -> None:
        if self._calls.pop(call.id, None) is not None:
            self.state.forget(call.id)
            self._slots.release()

    async def request(self, command: Command) -> tuple[Result, list[OutputView]]:
        """Run a command to its end; return its result and all its output."""
        call = await self._start(command)
        output: list[OutputView] = []
        items = call._items
        try:
            while True:  # Call.__anext__ inlined: no exception per request
                while not items:
                    if call._failure is not None:
                        raise call._failure
                    await call._waiter.wait()
                item = items.popleft()
                if isinstance(item, Result):
                    call.result = item
                    break
                output.append(item)
                if len(items) < call._limit:
                    call._space.set()
        except BaseException as exc:
            await call.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._forget(call)
        return item, output


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
    """Streams one request's output to the core (the state numbers the chunks)."""

    __slots__ = ("_channel", "_id")

    def __init__(self, channel: PeripheryChannel, request_id: int) -> None:
        self._channel = channel
        self._id = request_id

    async def write(self, stream: Stream, data: bytes) -> None:
        channel = self._channel
        for start in range(0, len(data), OUTPUT_CHUNK_BYTES):
            chunk = data[start : start + OUTPUT_CHUNK_BYTES]
            await channel._send(channel.state.output(self._id, stream, chunk))

    async def stdout(self, data: bytes) -> None:
        await self.write(Stream.STDOUT, data)

    async def stderr(self, data: bytes) -> None:
        await self.write(Stream.STDERR, data)

    async def events(self, frame: DockerEvents) -> None:
        """Send a ``DockerEvents`` frame for this request (its ``id`` is set here)."""
        await self._channel._send(self._channel.state.events(self._id, frame))

    def chunk_buffer(self, size: int) -> tuple[bytearray, memoryview]:
        """A fresh buffer for one chunk of up to ``size`` bytes and the view to fill (e.g. with
        ``os.readv``); ``send_chunk`` then frames and seals it in place, without copying the
        data (room for the frame's header before it, for the seal's tag after it)."""
        size = min(size, OUTPUT_CHUNK_BYTES)
        buffer = bytearray(_FRAME_HEADROOM + size + OVERHEAD)
        return buffer, memoryview(buffer)[_FRAME_HEADROOM : _FRAME_HEADROOM + size]

    async def send_chunk(self, stream: Stream, buffer: bytearray, length: int) -> None:
        """Send the first ``length`` bytes of a ``chunk_buffer`` as one ``Output`` frame, its
        header written into the headroom in front of the data. The buffer must not be touched
        afterwards while anything else holds a reference to it (it may be queued, or kept by
        the transport); once its refcount says only the caller holds it, it may be reused."""
        if length <= 0:
            return
        head = self._channel.state.output_head(self._id, stream, length)
        start = _FRAME_HEADROOM - len(head)
        buffer[start:_FRAME_HEADROOM] = head
        await self._channel._send_chunk(buffer, start, _FRAME_HEADROOM + length)


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

    state: PeripheryState

    def __init__(self, conn: Authenticated, settings: ChannelSettings, handler: Handler) -> None:
        super().__init__(conn, settings)
        self.state = PeripheryState(conn.keys, settings, time.monotonic())
        self._handler = handler
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._in_batch = False

    def _coalesce(self) -> bool:
        return self._in_batch or len(self._scopes) > 1

    async def _read(self, tg: anyio.abc.TaskGroup) -> None:
        state, next_message = self.state, self._next_message
        while (data := await next_message()) is not None:
            events = state.receive(data, time.monotonic())
            self._in_batch = len(events) > 1
            for event in events:
                match event:
                    case Start(request=request):
                        outcome = self._handler.inline(request.command)
                        if outcome is not None:
                            await self._send(_finish(state, request.id, outcome))
                        else:
                            scope = anyio.CancelScope()
                            self._scopes[request.id] = scope
                            tg.start_soon(self._serve, request.id, request.command, scope)
                    case CancelRequest(request_id=request_id):
                        running = self._scopes.get(request_id)
                        if running is not None:
                            running.cancel()
                    case Reply(frame=frame):
                        await self._send(frame)
                    case PeerError(code=code, message=message):
                        log.warning("core reports: %s: %s", code.value, message)
                    case BadFrame():
                        await self._reply_bad_frame(event)
            self._in_batch = False

    async def _serve(self, request_id: int, command: Command, scope: anyio.CancelScope) -> None:
        outcome = Outcome(error=ErrorInfo(ErrorCode.INTERNAL, "the handler did not finish"))
        try:
            with scope:
                outcome = await self._handler(command, OutputWriter(self, request_id))
            if scope.cancelled_caught:
                outcome = Outcome(
                    error=ErrorInfo(ErrorCode.CANCELLED, "cancelled; its processes were killed")
                )
        except ChannelClosed:
            return
        except Exception as exc:  # a bug in a handler must not take the channel down
            log.exception("handler failed on request %s", request_id)
            outcome = Outcome(error=ErrorInfo(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"))
        finally:
            self._scopes.pop(request_id, None)
        try:
            await self._send(_finish(self.state, request_id, outcome))
        except ChannelClosed:
            pass


def _finish(state: PeripheryState, request_id: int, outcome: Outcome) -> bytes:
    return state.finish(
        request_id, exit_code=outcome.exit_code, error=outcome.error, value=outcome.value
    )


def describe(peer: Peer) -> str:
    name = f" {peer.name}" if peer.name else ""
    return f"{peer.role.value}{name} {peer.public_key.fingerprint()}"


_ = BROKEN_CLOSE_CODE  # re-exported for drivers' tests
