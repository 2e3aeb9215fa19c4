"""The channel after the handshake, as I/O-free state machines: bytes and time in, events and
bytes out (h11's way). The websocket drivers in ``protocol.transport`` only move what these
produce; a test drives them with bytes and a clock.

What each holds:

- sealing: every outgoing websocket message is sealed (``protocol.sealing``), every incoming
  one opened at its position; one that does not open raises ``SealBroken`` and nothing in it
  is acted on: the channel must close;
- framing and batching: frames wait in a bounded outbox and leave as one message, a msgpack
  array of frames, sealed once (one AEAD per websocket message);
- heartbeats and the dead-peer watchdog, driven by ``tick(now)``;
- bad-frame counting (a frame that opens but does not decode: a peer's bug);
- the request table: on the core's side ids, the sequence of each request's output and which
  requests are open; on the periphery's side admission (duplicates, in-flight cap), output
  numbering and results.

Close reasons are for the local log; ``close_code`` is what the websocket closes with.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import msgspec

from protocol import codec
from protocol.aead import Buffer
from protocol.exceptions import ChannelClosed, FrameError, SealBroken
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
    Request,
    Result,
    ResultValue,
    Stream,
)
from protocol.sealing import Opener, Sealer, SessionKeys

NORMAL_CLOSE_CODE = 1000
DEAD_PEER_CLOSE_CODE = 1001  # going away
BROKEN_CLOSE_CODE = 1002  # protocol error: a message did not open, or too many bad frames
FLUSH_FRAMES = 16  # a batch this large is sent at once by whoever completed it
OUTBOX_FRAMES = 1024  # frames waiting to be written before senders wait
OUTBOX_BYTES = 8 * 1024 * 1024  # bytes waiting to be written before senders wait
WATCHDOG_PERIOD = 1.0  # how often stuck sends are looked for, at least
_BATCH_OVERHEAD = 16  # room for a batch's array header and the seal's tag


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """Limits and named timeouts of one channel, with finite defaults."""

    max_frame_bytes: int = codec.DEFAULT_MAX_FRAME_BYTES
    handshake_timeout: float = (
        5.0  # from accepting the TCP connection to the last handshake message
    )
    connect_timeout: float = 10.0  # TCP + TLS + websocket upgrade, when dialing
    heartbeat_interval: float = 10.0  # the peer is dead after two intervals of silence
    send_timeout: float = 30.0  # one frame that cannot be written in this: the peer is dead
    close_timeout: float = 2.0  # waiting for the peer's close frame
    max_in_flight: int = 64  # requests running at once on one channel
    max_bad_frames: int = 3  # frames that open but do not decode, before the channel closes
    output_buffer: int = 256  # output chunks buffered per request on the core side
    write_buffer_bytes: int = 4 * 1024 * 1024  # queued in the socket's writer before we wait


# ------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes (one encoded frame) to send back at once: a heartbeat's answer, a refusal."""

    frame: bytes


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame opened but did not decode; ``reply`` tells the peer (a typed ``Error``). When
    ``fatal``, it was one too many: send the reply, then close."""

    reason: str
    reply: bytes
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """The core's side: a request's output broke its sequence; the request is dropped."""

    request_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Start:
    """The periphery's side: run this admitted request."""

    request: Request


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """The periphery's side: the core cancels this running request."""

    request_id: int


@dataclass(frozen=True, slots=True)
class PeerError:
    """An ``Error`` frame about no request in particular, for the log."""

    code: ErrorCode
    message: str


def _pong(seq: int) -> bytes:
    return codec.encode(Heartbeat(seq=seq, reply=True))


class ChannelState:
    """What both ends share: seal/open, the outbox, heartbeats, bad frames, the close."""

    peer_what = "peer"  # how messages from the other end are named in reasons
    close_code = DEAD_PEER_CLOSE_CODE

    def __init__(self, keys: SessionKeys, settings: ChannelSettings, now: float) -> None:
        self.settings = settings
        self._sealer = Sealer(keys.send)
        self._opener = Opener(keys.receive, f"the {self.peer_what}")
        self.last_rx = now
        self._heartbeats = itertools.count()
        self._next_heartbeat = now
        self.bad_frames = 0
        self.close_reason = ""
        self.outbox: list[bytes | memoryview] = []
        self.outbox_bytes = 0
        self.sends_pending = 0
        self.send_progress = now

    # ---------------------------------------------------------------------------- outbound

    def seal(self, data: Buffer) -> bytes | bytearray:
        """Seal one websocket message. Seal in the order messages are written, and write each
        right after sealing it: the peer opens them only in that order."""
        return self._sealer.seal(data)

    def seal_in_place(self, buffer: bytearray, start: int, end: int) -> None:
        """Seal the message ``buffer[start:end]`` where it is, its tag after it (the buffer has
        ``sealing.OVERHEAD`` bytes of room there); the same order rule as ``seal``."""
        self._sealer.seal_in_place(buffer, start, end)

    def queue(self, frame: bytes | memoryview) -> bool:
        """Put a frame in the outbox; True when it holds a full batch to send now."""
        self.outbox.append(frame)
        self.outbox_bytes += len(frame)
        return len(self.outbox) >= FLUSH_FRAMES

    @property
    def outbox_full(self) -> bool:
        return len(self.outbox) >= OUTBOX_FRAMES or self.outbox_bytes >= OUTBOX_BYTES

    def take_outbox(self) -> list[bytes | memoryview]:
        frames, self.outbox, self.outbox_bytes = self.outbox, [], 0
        return frames

    def pack(self, frames: list[bytes | memoryview], start: int) -> tuple[Buffer, int]:
        """The plaintext of the next websocket message from ``frames[start:]`` (one frame, or
        a batch under ``max_frame_bytes``) and where the next message starts."""
        limit = self.settings.max_frame_bytes - _BATCH_OVERHEAD
        end, size = start, 0
        while end < len(frames) and (end == start or size + len(frames[end]) <= limit):
            size += len(frames[end])
            end += 1
        if end - start == 1:
            return frames[start], end
        return codec.batch(frames[start:end]), end

    def send_started(self, now: float) -> None:
        if not self.sends_pending:
            self.send_progress = now
        self.sends_pending += 1

    def send_finished(self, now: float) -> None:
        self.sends_pending -= 1
        self.send_progress = now

    # ----------------------------------------------------------------------------- inbound

    def open(self, data: Buffer, now: float) -> bytes | bytearray:
        """Open one websocket message; ``SealBroken`` (and the close reason set) if it does
        not open at its position."""
        self.last_rx = now
        try:
            return self._opener.open(data)
        except SealBroken as exc:
            self.close_reason = str(exc)
            self.close_code = BROKEN_CLOSE_CODE
            raise

    def activity(self, now: float) -> None:
        """Something arrived that is not a message (a websocket ping or pong)."""
        self.last_rx = now

    def _bad_frame(self, exc: FrameError) -> BadFrame:
        self.bad_frames += 1
        fatal = self.bad_frames >= self.settings.max_bad_frames
        if fatal:
            self.close_reason = f"{self.bad_frames} bad frames from the {self.peer_what}: {exc}"
            self.close_code = BROKEN_CLOSE_CODE
        reply = codec.encode(Error(code=ErrorCode.BAD_FRAME, message=str(exc)))
        return BadFrame(str(exc), reply, fatal)

    # -------------------------------------------------------------------------------- time

    def tick(self, now: float) -> bytes | None:
        """The heartbeat frame to send now, if one is due. ``ChannelClosed`` when the peer has
        been silent for two intervals or a send made no progress for ``send_timeout``."""
        interval = self.settings.heartbeat_interval
        if now - self.last_rx >= 2 * interval:
            self.close_reason = f"no message from the {self.peer_what} for {2 * interval:g}s"
            self.close_code = DEAD_PEER_CLOSE_CODE
            raise ChannelClosed(self.close_reason)
        if self.sends_pending and now - self.send_progress >= self.settings.send_timeout:
            self.close_reason = f"a send made no progress for {self.settings.send_timeout:g}s"
            self.close_code = DEAD_PEER_CLOSE_CODE
            raise ChannelClosed(self.close_reason)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + interval
            return codec.encode(Heartbeat(seq=next(self._heartbeats)))
        return None

    def next_tick(self, now: float) -> float:
        """When ``tick`` has something to do next, at the latest."""
        interval = self.settings.heartbeat_interval
        return min(self._next_heartbeat, self.last_rx + 2 * interval, now + WATCHDOG_PERIOD)

    def closing(self, reason: str, code: int = NORMAL_CLOSE_CODE) -> None:
        """We close (the first reason given stays)."""
        if not self.close_reason:
            self.close_reason = reason
            self.close_code = code


# ---------------------------------------------------------------------------- the core's end

CoreEvent = OutputView | Result | DockerEvents | Error | RequestFailed | Reply | BadFrame


class CoreState(ChannelState):
    """The core's end: starts requests, checks each one's output sequence."""

    peer_what = "periphery"

    def __init__(self, keys: SessionKeys, settings: ChannelSettings, now: float) -> None:
        super().__init__(keys, settings, now)
        self._decoder = codec.periphery_frame_decoder(settings.max_frame_bytes)
        self._ids = itertools.count(1)
        self.requests: dict[int, int] = {}  # open request id -> next output seq

    def request(self, command: Command) -> tuple[int, bytes]:
        request_id = next(self._ids)
        self.requests[request_id] = 0
        return request_id, codec.encode(Request(id=request_id, command=command))

    def cancel(self, request_id: int) -> bytes:
        return codec.encode(Cancel(id=request_id))

    def forget(self, request_id: int) -> None:
        self.requests.pop(request_id, None)

    def receive(self, data: Buffer, now: float) -> list[CoreEvent]:
        plain = self.open(data, now)
        try:
            frames = self._decoder.decode(plain)
        except FrameError as exc:
            return [self._bad_frame(exc)]
        events: list[CoreEvent] = []
        requests = self.requests
        for frame in frames:
            match frame:
                case OutputView(id=request_id, seq=seq):
                    expected = requests.get(request_id)
                    if expected is None:
                        continue  # a request we gave up on: its late output is dropped
                    if seq != expected:
                        del requests[request_id]
                        events.append(
                            RequestFailed(
                                request_id,
                                f"output {seq} of request {request_id} where {expected} was due",
                            )
                        )
                        continue
                    requests[request_id] = seq + 1
                    events.append(frame)
                case Result(id=request_id):
                    if requests.pop(request_id, None) is not None:
                        events.append(frame)
                case DockerEvents(id=request_id):
                    if request_id in requests:
                        events.append(frame)
                case Heartbeat(reply=False, seq=seq):
                    events.append(Reply(_pong(seq)))
                case Heartbeat():
                    pass
                case Error():
                    events.append(frame)
        return events


# ----------------------------------------------------------------------- the periphery's end

PeripheryEvent = Start | CancelRequest | Reply | BadFrame | PeerError


class PeripheryState(ChannelState):
    """The periphery's end: admits requests, numbers their output, closes them with a result."""

    peer_what = "core"

    def __init__(self, keys: SessionKeys, settings: ChannelSettings, now: float) -> None:
        super().__init__(keys, settings, now)
        self._decoder = codec.core_frame_decoder(settings.max_frame_bytes)
        self.active: dict[int, int] = {}  # running request id -> next output seq

    def receive(self, data: Buffer, now: float) -> list[PeripheryEvent]:
        plain = self.open(data, now)
        try:
            frames: list[CoreFrame] = self._decoder.decode(plain)
        except FrameError as exc:
            return [self._bad_frame(exc)]
        events: list[PeripheryEvent] = []
        for frame in frames:
            match frame:
                case Request():
                    events.append(self._admit(frame))
                case Cancel(id=request_id):
                    if request_id in self.active:
                        events.append(CancelRequest(request_id))
                case Heartbeat(reply=False, seq=seq):
                    events.append(Reply(_pong(seq)))
                case Heartbeat():
                    pass
                case Error(code=code, message=message):
                    events.append(PeerError(code, message))
        return events

    def _admit(self, request: Request) -> Start | Reply:
        refusal: ErrorInfo | None = None
        if request.id in self.active:
            refusal = ErrorInfo(ErrorCode.DUPLICATE_ID, f"request {request.id} is in flight")
        elif len(self.active) >= self.settings.max_in_flight:
            refusal = ErrorInfo(
                ErrorCode.BUSY, f"{self.settings.max_in_flight} requests already in flight"
            )
        if refusal is not None:
            return Reply(codec.encode(Result(id=request.id, error=refusal)))
        self.active[request.id] = 0
        return Start(request)

    def output(self, request_id: int, stream: Stream, data: bytes) -> bytes:
        seq = self.active[request_id]
        self.active[request_id] = seq + 1
        return codec.encode(Output(id=request_id, seq=seq, stream=stream, data=data))

    def output_head(self, request_id: int, stream: Stream, length: int) -> bytes:
        """The msgpack of an ``Output`` frame up to its data, for ``length`` bytes of data
        written after it (the frame of ``Output(data=b"")`` with a ``bin 32`` header)."""
        seq = self.active[request_id]
        self.active[request_id] = seq + 1
        empty = codec.encode(Output(id=request_id, seq=seq, stream=stream, data=b""))
        return empty[:-2] + b"\xc6" + length.to_bytes(4, "big")

    def events(self, request_id: int, frame: DockerEvents) -> bytes:
        return codec.encode(msgspec.structs.replace(frame, id=request_id))

    def finish(
        self,
        request_id: int,
        *,
        exit_code: int | None = None,
        error: ErrorInfo | None = None,
        value: ResultValue | None = None,
    ) -> bytes:
        """The request's ``Result``; the request leaves the table."""
        self.active.pop(request_id, None)
        return codec.encode(Result(id=request_id, exit_code=exit_code, error=error, value=value))
