"""Raw-socket abuse of a real periphery: nothing runs, nothing else is decoded, logins go on."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import anyio
import msgspec
import pytest

from protocol import codec
from protocol.channel import BROKEN_CLOSE_CODE, ChannelSettings, CoreState
from protocol.connect import AUTH_FAILED_CLOSE_CODE, DialFailed, dial
from protocol.messages import Echo, Error, ErrorCode, Request, Result, Role, Run
from tests.support.processes import KeyPair, make_key

pytestmark = pytest.mark.anyio


async def expect_auth_close(ws: aiohttp.ClientWebSocketResponse, within: float = 10.0) -> float:
    started = time.monotonic()
    with anyio.fail_after(within):
        msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.CLOSE, msg
    assert ws.close_code == AUTH_FAILED_CLOSE_CODE
    assert msg.extra == "authentication failed"
    return time.monotonic() - started


async def test_a_command_before_authentication_closes_and_runs_nothing(
    periphery_factory,
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    marker = periphery.workdir / "root" / "pwned"
    request = Request(id=1, command=Run(argv=["touch", str(marker)]))
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(periphery.url)
        await ws.send_bytes(codec.encode(request))
        await expect_auth_close(ws)
    await anyio.sleep(0.3)
    assert not marker.exists()
    periphery.wait_for("authentication failed from 127.0.0.1", timeout=5)


async def test_a_2mib_frame_before_login_is_refused_from_its_header(periphery_factory) -> None:  # type: ignore[no-untyped-def]
    """Before authentication the websocket reads at most a handshake message: aiohttp closes
    with 1009 (too big) on the frame's declared length, before buffering its payload."""
    periphery = periphery_factory.start()
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(periphery.url)
        try:
            await ws.send_bytes(b"\xc1" * (2 * 1024 * 1024))
        except ConnectionError:
            pass  # refused while we were still sending: the agent did not wait for the rest
        with anyio.fail_after(10):
            msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code in (1009, 1006)  # 1006: the reset came first
    periphery.wait_for("authentication failed from 127.0.0.1: .*exceeds limit 4097")


async def test_text_frames_and_silence_close_the_same_way(periphery_factory) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start(handshake_timeout=1.0)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(periphery.url)
        await ws.send_str("hello?")
        await expect_auth_close(ws)
        silent = await session.ws_connect(periphery.url)
        waited = await expect_auth_close(silent, within=5)
        assert 0.8 <= waited <= 3.0, f"deadline 1 s, closed after {waited:.2f}s"


async def test_a_wrong_key_closes_exactly_like_garbage(
    core_keys: KeyPair, periphery_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    stranger = make_key(tmp_path / "stranger.key")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DialFailed, match="refused our authentication"):
            await dial(
                session,
                periphery.url,
                private_key=stranger.key,
                role=Role.CORE,
                trusted_keys=[periphery.keys.public],
            )
    periphery.wait_for("is not authorized", timeout=5)


async def test_200_idle_unauthenticated_sockets_do_not_stop_a_real_login(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        idle = []
        for _ in range(200):
            idle.append(await session.ws_connect(periphery.url))
        started = time.monotonic()
        conn = await dial(
            session,
            periphery.url,
            private_key=core_keys.key,
            role=Role.CORE,
            trusted_keys=[periphery.keys.public],
        )
        login = time.monotonic() - started
        state = CoreState(conn.keys, ChannelSettings(), time.monotonic())
        _, frame = state.request(Echo(data=b"hi"))
        await conn.ws.send_bytes(bytes(state.seal(frame)))
        with anyio.fail_after(5):
            results: list[Result] = []
            while not results:
                events = state.receive((await conn.ws.receive()).data, time.monotonic())
                results = [e for e in events if isinstance(e, Result)]
        assert results[0].exit_code == 0
        await conn.ws.close()
        for sock in idle:
            await sock.close()
    assert login < 1.0, f"login took {login:.2f}s with 200 idle sockets"


async def test_failures_from_an_address_never_lock_out_the_real_key(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    """Junk from the real core's address (NAT, same host) only quiets the log: the key that
    proves itself still logs in, at once."""
    periphery = periphery_factory.start(auth_failure_limit=3, auth_failure_window=30.0)
    async with aiohttp.ClientSession() as session:
        for _ in range(6):
            ws = await session.ws_connect(periphery.url)
            await ws.send_bytes(b"garbage")
            await expect_auth_close(ws)
        conn = await dial(
            session,
            periphery.url,
            private_key=core_keys.key,
            role=Role.CORE,
            trusted_keys=[periphery.keys.public],
        )
        await conn.ws.close()
    periphery.wait_for("are not logged until it calms down", timeout=5)
    periphery.wait_for("authenticated core", timeout=5)
    failures = [line for line in periphery.lines if "authentication failed from" in line]
    assert len(failures) == 4, failures  # 3 logged, the 4th says the rest are not


async def test_malformed_frames_after_login_get_typed_errors_then_a_close(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    decoder = codec.periphery_frame_decoder()
    async with aiohttp.ClientSession() as session:
        conn = await dial(
            session,
            periphery.url,
            private_key=core_keys.key,
            role=Role.CORE,
            trusted_keys=[periphery.keys.public],
            settings=ChannelSettings(),
        )
        ws = conn.ws
        state = CoreState(conn.keys, ChannelSettings(), time.monotonic())
        bad_frames = [
            b"\xc1 not msgpack",
            msgspec.msgpack.encode({"t": "format_disk", "id": 1}),
            msgspec.msgpack.encode({"t": "req", "id": 2, "command": {"cmd": "nope"}}),
        ]
        errors = []
        for frame in bad_frames:  # sealed: from the authenticated core, but malformed
            await ws.send_bytes(bytes(state.seal(frame)))
            with anyio.fail_after(5):
                while True:
                    msg = await ws.receive()
                    assert msg.type is aiohttp.WSMsgType.BINARY, (msg, periphery.lines[-5:])
                    reply = decoder.decode(state.open(msg.data, 0))[0]
                    if isinstance(reply, Error):
                        errors.append(reply)
                        break
        assert [e.code for e in errors] == [ErrorCode.BAD_FRAME] * 3
        assert "format_disk" in errors[1].message and "nope" in errors[2].message
        with anyio.fail_after(5):
            msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == BROKEN_CLOSE_CODE


async def test_an_unsealed_request_after_login_closes_the_channel_and_runs_nothing(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    marker = periphery.workdir / "root" / "pwned"
    async with aiohttp.ClientSession() as session:
        conn = await dial(
            session,
            periphery.url,
            private_key=core_keys.key,
            role=Role.CORE,
            trusted_keys=[periphery.keys.public],
        )
        request = Request(id=1, command=Run(argv=["touch", str(marker)]))
        await conn.ws.send_bytes(codec.encode(request))
        with anyio.fail_after(5):
            while (msg := await conn.ws.receive()).type is aiohttp.WSMsgType.BINARY:
                pass  # a heartbeat, sealed
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == BROKEN_CLOSE_CODE
        assert "does not open" in msg.extra
    await anyio.sleep(0.3)
    assert not marker.exists()
    periphery.wait_for("message 0 from the core does not open: forged, modified or injected")
