"""Dial-out mode (the periphery dials the core) and wss with a self-signed certificate."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web

from core.pool import PeripheryPool, PoolSettings, ServerEndpoint
from protocol.connect import DialFailed, dial
from protocol.exceptions import ChannelError
from protocol.messages import Echo, EchoReply, Role
from protocol.transport import ChannelSettings
from tests.support.processes import KeyPair
from tests.support.tls import self_signed

pytestmark = pytest.mark.anyio

FAST = PoolSettings(
    channel=ChannelSettings(heartbeat_interval=0.5, connect_timeout=3.0),
    reconnect_initial_delay=0.05,
    reconnect_max_delay=0.5,
)


async def serve_core(pool: PeripheryPool) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/ws/periphery", pool.handle_dial_in)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"ws://127.0.0.1:{port}"


async def test_a_periphery_dials_the_core_and_is_commanded(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    async with PeripheryPool(core_keys.key, FAST) as pool:
        runner, core_url = await serve_core(pool)
        try:
            periphery = periphery_factory.make(
                listen="", core_address=core_url, server_name="nas", reconnect_initial_delay=0.05
            )
            pool.set_servers([ServerEndpoint("nas", periphery.keys.public)])
            await anyio.to_thread.run_sync(periphery.start_and_wait)
            channel = await pool.channel("nas", 10)
            assert channel.peer.name == "nas"
            result, chunks = await channel.request(Echo(data=b"over the dial-in"))
            assert result.value == EchoReply(b"over the dial-in") and chunks == []

            # It reconnects by itself when the core drops it.
            await channel.aclose("test drops it")
            again = await pool.channel("nas", 10)
            assert again is not channel
            assert (await again.request(Echo(data=b"x")))[0].value.data == b"x"
        finally:
            await runner.cleanup()


async def test_a_dialing_periphery_under_another_name_is_refused(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    async with PeripheryPool(core_keys.key, FAST) as pool:
        runner, core_url = await serve_core(pool)
        try:
            periphery = periphery_factory.make(
                listen="", core_address=core_url, server_name="impostor"
            )
            pool.set_servers([ServerEndpoint("nas", periphery.keys.public)])
            await anyio.to_thread.run_sync(periphery.start_and_wait)
            await anyio.to_thread.run_sync(
                lambda: periphery.wait_for("refused our authentication", 10)
            )
            assert pool.connected() == {}
        finally:
            await runner.cleanup()


async def test_wss_with_a_self_signed_certificate(
    core_keys: KeyPair, periphery_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    cert, key = self_signed(tmp_path)
    periphery = periphery_factory.start(tls_cert=str(cert), tls_key=str(key))
    assert periphery.url.startswith("wss://")
    async with PeripheryPool(core_keys.key, FAST) as pool:
        pool.set_servers([ServerEndpoint("p1", periphery.keys.public, periphery.url)])
        channel = await pool.channel("p1", 10)
        result, chunks = await channel.request(Echo(data=b"encrypted"))
        assert result.value == EchoReply(b"encrypted")

    # Checking the certificate against a CA that signed it works as well...
    context = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as session:
        conn = await dial(
            session,
            periphery.url,
            private_key=core_keys.key,
            role=Role.CORE,
            trusted_keys=[periphery.keys.public],
            ssl_context=context,
        )
        await conn.ws.close()
        # ...and plain ws:// to a TLS port does not connect.
        with pytest.raises(DialFailed):
            await dial(
                session,
                periphery.url.replace("wss://", "ws://"),
                private_key=core_keys.key,
                role=Role.CORE,
                trusted_keys=[periphery.keys.public],
                settings=ChannelSettings(connect_timeout=2, handshake_timeout=2),
            )
    assert conn.peer.role is Role.PERIPHERY


async def test_a_closed_channel_refuses_new_requests(core_keys: KeyPair, periphery_factory) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    async with PeripheryPool(core_keys.key, FAST) as pool:
        pool.set_servers([ServerEndpoint("p1", periphery.keys.public, periphery.url)])
        channel = await pool.channel("p1", 10)
        await channel.aclose()
        with pytest.raises(ChannelError):
            await channel.request(Echo(data=b"x"))
