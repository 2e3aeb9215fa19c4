"""The channel's state machines driven with bytes and a clock, no sockets; Hypothesis plays
both ends and a man in the middle."""

from __future__ import annotations

import os

import anyio
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from protocol import codec
from protocol.aead import Backend, backend
from protocol.channel import (
    BROKEN_CLOSE_CODE,
    BadFrame,
    ChannelSettings,
    CoreState,
    PeripheryState,
    Reply,
    Start,
)
from protocol.exceptions import ChannelClosed, SealBroken
from protocol.inmemory import authenticated_pair
from protocol.keys import PrivateKey
from protocol.messages import Echo, Heartbeat, OutputView, Request, Result, Run, Stream
from protocol.sealing import Opener, Sealer, SessionKeys, derive_keys
from protocol.transport import CoreChannel, Outcome, OutputWriter, PeripheryChannel

CORE_KEY, PERIPHERY_KEY = PrivateKey.generate(), PrivateKey.generate()
SETTINGS = ChannelSettings(heartbeat_interval=10.0, max_in_flight=10_000)


def keypair() -> tuple[SessionKeys, SessionKeys]:
    secret, transcript = os.urandom(32), os.urandom(32)
    return (
        derive_keys(secret, transcript, dialer=True),
        derive_keys(secret, transcript, dialer=False),
    )


# ------------------------------------------------------------------------------ sealing


def test_both_aead_backends_agree() -> None:
    import protocol.aead as aead

    fallback = Backend.__new__(Backend)
    fallback._lib, fallback.name, fallback.aead_name = None, "cryptography", "cryptography"
    lib = Backend()  # libcrypto through ctypes, whatever this process prefers
    assert lib.aead_name == "libcrypto"
    key, nonce = os.urandom(32), os.urandom(12)
    for data in (b"", b"x", os.urandom(5000), bytearray(os.urandom(70_000))):
        ours = lib.aead(key, encrypt=True).seal(nonce, data)
        theirs = fallback.aead(key, encrypt=True).seal(nonce, data)
        assert ours == theirs
        assert fallback.aead(key, encrypt=False).open(nonce, ours) == data
        assert lib.aead(key, encrypt=False).open(nonce, theirs) == data
        for sealer in (lib, fallback):  # in place: the tag after the data, in the buffer
            buffer = bytearray(b"head") + bytearray(data) + bytearray(16 + 3)
            sealer.aead(key, encrypt=True).seal_in_place(nonce, buffer, 4, 4 + len(data))
            assert buffer[4 : 4 + len(data) + 16] == ours and buffer[:4] == b"head"
            assert buffer[-3:] == bytes(3)
        tampered = bytearray(ours)
        if tampered:
            tampered[-1] ^= 1
            assert lib.aead(key, encrypt=False).open(nonce, tampered) is None
            assert fallback.aead(key, encrypt=False).open(nonce, tampered) is None
    private, public = backend().x25519_keypair()
    other_private, other_public = fallback.x25519_keypair()
    assert backend().x25519(private, other_public) == fallback.x25519(other_private, public)
    assert aead.hkdf_sha256(b"k", salt=b"s", info=b"i", length=42)[:4].hex() != ""


def test_a_message_opens_only_at_its_position_and_the_reason_says_what_happened() -> None:
    mine, theirs = keypair()
    sealer, opener = Sealer(mine.send), Opener(theirs.receive, "the core")
    messages = [bytes(sealer.seal(f"m{i}".encode())) for i in range(5)]
    assert opener.open(messages[0]) == b"m0"
    assert opener.open(messages[1]) == b"m1"
    with pytest.raises(SealBroken, match="message 2 from the core does not open: it is a replay"):
        opener.open(messages[0])
    with pytest.raises(SealBroken, match=r"it is message 4 \(2 dropped or reordered"):
        opener.open(messages[4])
    tampered = bytearray(messages[2])
    tampered[0] ^= 1
    with pytest.raises(SealBroken, match="forged, modified or injected"):
        opener.open(tampered)
    with pytest.raises(SealBroken, match="shorter than a seal"):
        opener.open(b"short")
    assert opener.open(messages[2]) == b"m2"  # nothing failed moved the position
    # A message reflected back to its sender does not open either (one key per direction).
    with pytest.raises(SealBroken):
        Opener(mine.receive).open(messages[0])


# ------------------------------------------------------------------ the state machines


@settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
class ChannelMachine(RuleBasedStateMachine):
    """Both ends over two wires, a clock, and an attacker who may touch one message."""

    @initialize()
    def setup(self) -> None:
        core_keys, periphery_keys = keypair()
        self.now = 0.0
        self.core = CoreState(core_keys, SETTINGS, self.now)
        self.periphery = PeripheryState(periphery_keys, SETTINGS, self.now)
        self.to_periphery: list[bytes] = []
        self.to_core: list[bytes] = []
        self.sent_requests: list[int] = []  # in order
        self.started: list[int] = []
        self.running: set[int] = set()
        self.outputs_sent: dict[int, int] = {}
        self.outputs_seen: dict[int, list[int]] = {}
        self.results: set[int] = set()
        self.broken: str | None = None  # which end refused what arrived
        self.gap_on: list[bytes] | None = None  # a wire whose last message was dropped
        self.before_gap = 0  # how many good messages that wire still holds before the gap

    # ------------------------------------------------------------------------- traffic

    @precondition(lambda self: self.broken is None)
    @rule(size=st.integers(0, 3))
    def core_sends_a_request(self, size: int) -> None:
        request_id, frame = self.core.request(Echo(data=b"x" * size))
        self.sent_requests.append(request_id)
        self.to_periphery.append(bytes(self.core.seal(frame)))

    @precondition(lambda self: self.broken is None)
    @rule(batch=st.integers(2, 5))
    def core_sends_a_batch(self, batch: int) -> None:
        frames = []
        for _ in range(batch):
            request_id, frame = self.core.request(Echo(data=b"b"))
            self.sent_requests.append(request_id)
            frames.append(frame)
        message, end = self.core.pack(frames, 0)
        assert end == batch
        self.to_periphery.append(bytes(self.core.seal(message)))

    @precondition(lambda self: self.broken is None and self.running)
    @rule(data=st.data())
    def periphery_streams(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.running)))
        chunk = data.draw(st.binary(max_size=64))
        frame = self.periphery.output(request_id, Stream.STDOUT, chunk)
        self.outputs_sent[request_id] = self.outputs_sent.get(request_id, 0) + 1
        self.to_core.append(bytes(self.periphery.seal(frame)))

    @precondition(lambda self: self.broken is None and self.running)
    @rule(data=st.data())
    def periphery_finishes(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.running)))
        self.running.discard(request_id)
        frame = self.periphery.finish(request_id, exit_code=0)
        self.to_core.append(bytes(self.periphery.seal(frame)))

    def _expect_gap(self, wire: list[bytes], receiver: CoreState | PeripheryState) -> bool:
        if self.gap_on is not wire:
            return False
        if self.before_gap > 0:  # still a message sent before the dropped one: it opens
            self.before_gap -= 1
            return False
        with pytest.raises(SealBroken, match="does not open"):
            receiver.receive(wire.pop(0), self.now)
        self.broken = "dropped"
        return True

    @precondition(lambda self: self.broken is None and self.to_periphery)
    @rule()
    def deliver_to_periphery(self) -> None:
        if self._expect_gap(self.to_periphery, self.periphery):
            return
        for event in self.periphery.receive(self.to_periphery.pop(0), self.now):
            match event:
                case Start(request=Request(id=request_id)):
                    self.started.append(request_id)
                    self.running.add(request_id)
                case Reply(frame=frame):  # a refusal (busy) or a heartbeat's answer
                    self.to_core.append(bytes(self.periphery.seal(frame)))
                case _:
                    raise AssertionError(event)

    @precondition(lambda self: self.broken is None and self.to_core)
    @rule()
    def deliver_to_core(self) -> None:
        if self._expect_gap(self.to_core, self.core):
            return
        for event in self.core.receive(self.to_core.pop(0), self.now):
            match event:
                case OutputView(id=request_id, seq=seq):
                    self.outputs_seen.setdefault(request_id, []).append(seq)
                case Result(id=request_id):
                    assert request_id not in self.results
                    self.results.add(request_id)
                case Reply(frame=frame):
                    self.to_periphery.append(bytes(self.core.seal(frame)))
                case _:
                    raise AssertionError(event)

    @precondition(lambda self: self.broken is None)
    @rule(seconds=st.floats(0.1, 8.0))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        for state, wire in ((self.core, self.to_periphery), (self.periphery, self.to_core)):
            try:
                heartbeat = state.tick(self.now)
            except ChannelClosed:
                assert self.now - state.last_rx >= 2 * SETTINGS.heartbeat_interval
                self.broken = "silence"
                return
            if heartbeat is not None:
                wire.append(bytes(state.seal(heartbeat)))
            assert state.next_tick(self.now) > self.now

    @rule()
    def nothing_more_happens(self) -> None:
        """After a close, the machine can still take a step."""

    # ------------------------------------------------------------------------- attacker

    @precondition(lambda self: self.broken is None and (self.to_periphery or self.to_core))
    @rule(
        to_periphery=st.booleans(),
        action=st.sampled_from(["inject", "modify", "replay", "reorder", "drop"]),
        data=st.data(),
    )
    def attacker_touches_one_message(
        self, to_periphery: bool, action: str, data: st.DataObject
    ) -> None:
        wire = self.to_periphery if to_periphery else self.to_core
        if not wire:
            return
        receiver = self.periphery if to_periphery else self.core
        index = data.draw(st.integers(0, len(wire) - 1))
        message = wire[index]
        match action:
            case "inject":
                forged = codec.encode(Request(id=999, command=Run(argv=["touch", "PROOF"])))
                wire.insert(index, data.draw(st.sampled_from([forged, forged + bytes(16)])))
            case "modify":
                changed = bytearray(message)
                changed[data.draw(st.integers(0, len(changed) - 1))] ^= 1 << data.draw(
                    st.integers(0, 7)
                )
                wire[index] = bytes(changed)
            case "replay":
                wire.insert(index + 1, message)
                index += 1
            case "reorder":
                if index + 1 >= len(wire):
                    return
                wire[index], wire[index + 1] = wire[index + 1], wire[index]
            case "drop":
                del wire[index]
                if index >= len(wire):
                    self.gap_on = wire  # noticed when the next message after it arrives
                    self.before_gap = len(wire)
                    return
        # Everything before the touched message is fine; the touched one breaks the channel.
        for _ in range(index):
            (self.deliver_to_periphery if to_periphery else self.deliver_to_core)()
        started, results = len(self.started), set(self.results)
        outputs = {k: list(v) for k, v in self.outputs_seen.items()}
        with pytest.raises(SealBroken):
            receiver.receive(wire.pop(0), self.now)
        assert receiver.close_code == BROKEN_CLOSE_CODE and "does not open" in receiver.close_reason
        # Nothing in it was acted on.
        assert (len(self.started), self.results, self.outputs_seen) == (started, results, outputs)
        self.broken = "tampered"

    # ------------------------------------------------------------------------ invariants

    @invariant()
    def requests_start_in_order_once(self) -> None:
        if hasattr(self, "started"):
            assert self.started == self.sent_requests[: len(self.started)]
            assert 999 not in self.started

    @invariant()
    def output_arrives_in_sequence(self) -> None:
        if hasattr(self, "outputs_seen"):
            for request_id, seqs in self.outputs_seen.items():
                assert seqs == list(range(len(seqs))), (request_id, seqs)


TestChannelMachine = ChannelMachine.TestCase


def test_a_frame_that_opens_but_does_not_decode_is_answered_then_closes_the_third_time() -> None:
    core_keys, periphery_keys = keypair()
    core = CoreState(core_keys, SETTINGS, 0.0)
    periphery = PeripheryState(periphery_keys, SETTINGS, 0.0)
    events = [periphery.receive(bytes(core.seal(b"\xc1 junk")), 0.0)[0] for _ in range(3)]
    assert all(isinstance(e, BadFrame) for e in events)
    assert [e.fatal for e in events if isinstance(e, BadFrame)] == [False, False, True]
    assert periphery.close_code == BROKEN_CLOSE_CODE


def test_heartbeats_and_the_dead_peer_watchdog_run_on_the_given_clock() -> None:
    keys, _ = keypair()
    state = CoreState(keys, ChannelSettings(heartbeat_interval=1.0), 100.0)
    assert state.tick(100.0) is not None  # the first one at once
    assert state.tick(100.5) is None
    assert state.tick(101.0) is not None
    assert state.next_tick(101.0) <= 102.0
    with pytest.raises(ChannelClosed, match="no message from the periphery for 2s"):
        state.tick(102.0)


def test_a_busy_periphery_refuses_past_its_in_flight_cap() -> None:
    core_keys, periphery_keys = keypair()
    core = CoreState(core_keys, ChannelSettings(max_in_flight=1), 0.0)
    periphery = PeripheryState(periphery_keys, ChannelSettings(max_in_flight=1), 0.0)
    first = periphery.receive(bytes(core.seal(core.request(Echo(data=b""))[1])), 0.0)
    second = periphery.receive(bytes(core.seal(core.request(Echo(data=b""))[1])), 0.0)
    assert isinstance(first[0], Start) and isinstance(second[0], Reply)
    refusal = codec.periphery_frame_decoder().decode(second[0].frame)[0]
    assert isinstance(refusal, Result) and refusal.error is not None
    assert refusal.error.code.value == "busy"


def test_heartbeat_replies_are_pongs() -> None:
    core_keys, periphery_keys = keypair()
    core = CoreState(core_keys, SETTINGS, 0.0)
    periphery = PeripheryState(periphery_keys, SETTINGS, 0.0)
    ping = core.tick(0.0)
    assert ping is not None
    (reply,) = periphery.receive(bytes(core.seal(ping)), 0.0)
    assert isinstance(reply, Reply)
    assert codec.encode(Heartbeat(seq=0, reply=True)) == reply.frame


# ------------------------------------------- the drivers over the in-memory transport pair


class Handler:
    def __init__(self) -> None:
        self.ran: list[list[str]] = []

    def inline(self, command: object) -> Outcome | None:
        return None

    async def __call__(self, command: object, out: OutputWriter) -> Outcome:
        assert isinstance(command, Run)
        self.ran.append(command.argv)
        await out.stdout(" ".join(command.argv).encode())
        return Outcome(exit_code=0)


@pytest.mark.anyio
async def test_channels_over_the_in_memory_pair_and_a_tampered_message() -> None:
    core_conn, periphery_conn, core_ws, _ = authenticated_pair(CORE_KEY, PERIPHERY_KEY)
    handler = Handler()
    core = CoreChannel(core_conn, SETTINGS)
    periphery = PeripheryChannel(periphery_conn, SETTINGS, handler)
    async with anyio.create_task_group() as tg:
        await tg.start(core.run)
        await tg.start(periphery.run)
        result, output = await core.request(Run(argv=["echo", "hi"]))
        assert result.exit_code == 0 and bytes(output[0].data) == b"echo hi"

        def flip(direction: str, message: bytes) -> list[bytes]:
            return [message[:-1] + bytes([message[-1] ^ 1])]

        core_ws.tap = flip
        with anyio.fail_after(5), pytest.raises(ChannelClosed, match="closed by the periphery"):
            await core.request(Run(argv=["touch", "PROOF"]))
        await periphery.wait_closed()
        await core.wait_closed()
    assert handler.ran == [["echo", "hi"]]
    assert "does not open: forged, modified or injected" in periphery.close_reason
