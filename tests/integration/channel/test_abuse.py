"""Raw-socket abuse of a real periphery: nothing runs, nothing else is decoded, logins go on."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import anyio
import msgspec
import pytest

from protocol import codec
from protocol.messages import Echo, Error, ErrorCode, Request, Result, Role, Run
from protocol.transport import (
    AUTH_FAILED_CLOSE_CODE,
    BAD_FRAMES_CLOSE_CODE,
    ChannelSettings,
    DialFailed,
    dial,
)
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


async def test_a_2mib_garbage_frame_closes_the_socket(periphery_factory) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(periphery.url)
        await ws.send_bytes(b"\xc1" * (2 * 1024 * 1024))
        await expect_auth_close(ws)


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
        ws, peer = await dial(
            session,
            periphery.url,
            private_key=core_keys.key,
            role=Role.CORE,
            trusted_keys=[periphery.keys.public],
        )
        login = time.monotonic() - started
        await ws.send_bytes(codec.encode(Request(id=1, command=Echo(data=b"hi"))))
        with anyio.fail_after(5):
            while not isinstance(
                reply := codec.periphery_frame_decoder().decode((await ws.receive()).data)[-1],
                Result,
            ):
                pass
        assert reply.exit_code == 0
        await ws.close()
        for sock in idle:
            await sock.close()
    # Well under the 5 s handshake deadline the idle sockets hold their slots for.
    assert login < 2.5, f"login took {login:.2f}s with 200 idle sockets"


async def test_auth_failures_are_rate_limited_per_address(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start(auth_failure_limit=3, auth_failure_window=30.0)
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            ws = await session.ws_connect(periphery.url)
            await ws.send_bytes(b"garbage")
            await expect_auth_close(ws)
        # Now even the right key is refused, and it looks the same from outside.
        with pytest.raises(DialFailed, match="refused our authentication"):
            await dial(
                session,
                periphery.url,
                private_key=core_keys.key,
                role=Role.CORE,
                trusted_keys=[periphery.keys.public],
            )
    periphery.wait_for("too many recent failures", timeout=5)  # its log, read by a thread


async def test_malformed_frames_after_login_get_typed_errors_then_a_close(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    decoder = codec.periphery_frame_decoder()
    async with aiohttp.ClientSession() as session:
        ws, _ = await dial(
            session,
            periphery.url,
            private_key=core_keys.key,
            role=Role.CORE,
            trusted_keys=[periphery.keys.public],
            settings=ChannelSettings(),
        )
        bad_frames = [
            b"\xc1 not msgpack",
            msgspec.msgpack.encode({"t": "format_disk", "id": 1}),
            msgspec.msgpack.encode({"t": "req", "id": 2, "command": {"cmd": "nope"}}),
        ]
        errors = []
        for frame in bad_frames:
            await ws.send_bytes(frame)
            with anyio.fail_after(5):
                while True:
                    reply = decoder.decode((await ws.receive()).data)[0]
                    if isinstance(reply, Error):
                        errors.append(reply)
                        break
        assert [e.code for e in errors] == [ErrorCode.BAD_FRAME] * 3
        assert "format_disk" in errors[1].message and "nope" in errors[2].message
        with anyio.fail_after(5):
            msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == BAD_FRAMES_CLOSE_CODE
