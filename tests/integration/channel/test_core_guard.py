"""The core's own listener, guarded (core/server.py: a ``GuardedRunner`` over the whole app, the
handshake path ``/ws/periphery``): a real core in-process on loopback, raw sockets against it.

- an idle TCP connection is closed at the deadline counted from the accept (no HTTP upgrade
  needed to be held to it), while a keep-alive connection that made a plain API request is
  released from the guard and stays open;
- 300 idle sockets from one address are capped (the least advanced evicted), and meanwhile the
  API answers and a periphery dialing in authenticates within a second;
- a 16 MiB websocket frame on ``/ws/periphery`` before authentication is refused from its
  header (close 1009), nothing buffered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import anyio
import pytest

from core.client import CoreClient
from core.config import load_config
from protocol.admission import AdmissionLimits
from protocol.connect import dial
from protocol.messages import Role
from tests.support.core_server import start_core
from tests.support.processes import KeyPair, make_key, toml_value, write_toml

pytestmark = pytest.mark.anyio

TOKEN = "guard-test-token-0123456789"
DEADLINE = AdmissionLimits().deadline


@dataclass
class Core:
    port: int
    probe: KeyPair
    core: KeyPair

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def core(tmp_path: Path, core_keys: KeyPair) -> AsyncIterator[Core]:
    probe = make_key(tmp_path / "probe.key")
    resources = tmp_path / "resources.toml"
    resources.write_text(
        '[[server]]\nname = "probe"\n[server.config]\npublic_key = '
        + toml_value(probe.public.openssh_line())
        + "\n"
    )
    config = write_toml(
        tmp_path / "core.toml",
        {
            "listen": "127.0.0.1:0",
            "data_dir": str(tmp_path / "data"),
            "private_key": str(core_keys.path),
            "api_tokens": [TOKEN],
            "resources": [str(resources)],
            "poll_interval": 0,
        },
    )
    async with anyio.create_task_group() as tg:
        port, _ = await start_core(tg, load_config(config))
        async with CoreClient(f"http://127.0.0.1:{port}", TOKEN) as client:
            await client.sync()  # the core learns the server it accepts a dial-in from
        yield Core(port, probe, core_keys)
        tg.cancel_scope.cancel()


async def healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    with anyio.fail_after(5):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        assert b'"ok"' in await reader.readexactly(length)


async def closed_after(reader: asyncio.StreamReader, within: float) -> float:
    started = time.monotonic()
    with anyio.fail_after(within):
        assert await reader.read() == b""
    return time.monotonic() - started


async def probe_dials_in(core: Core) -> float:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        conn = await dial(
            session,
            f"ws://127.0.0.1:{core.port}/ws/periphery",
            private_key=core.probe.key,
            role=Role.PERIPHERY,
            trusted_keys=[core.core.public],
            name="probe",
        )
        took = time.monotonic() - started
        await conn.ws.close()
    return took


async def test_an_idle_connection_is_closed_at_the_deadline_and_plain_http_is_released(
    core: Core,
) -> None:
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", core.port)
    http_reader, http_writer = await asyncio.open_connection("127.0.0.1", core.port)
    await healthz(http_reader, http_writer, core.port)
    waited = await closed_after(idle_reader, DEADLINE + 3)
    assert DEADLINE - 0.5 <= waited <= DEADLINE + 2, f"closed after {waited:.2f}s"
    await anyio.sleep(0.5)
    await healthz(http_reader, http_writer, core.port)  # the same connection, past the deadline
    for writer in (idle_writer, http_writer):
        writer.close()


async def test_300_idle_sockets_are_capped_and_a_periphery_still_dials_in(core: Core) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", core.port) for _ in range(300)]
    await anyio.sleep(0.3)
    open_ = 0
    for reader, _ in idle:
        try:
            with anyio.fail_after(0.01):
                await reader.read()  # returns b"" at once for those evicted
        except TimeoutError:
            open_ += 1
    assert open_ == AdmissionLimits().per_address, open_  # the newest 32 of one address
    took = await probe_dials_in(core)
    assert took < 1.0, f"the dial-in took {took:.2f}s"
    started = time.monotonic()
    async with CoreClient(core.url, TOKEN) as client:
        servers = await client.servers()
    assert time.monotonic() - started < 1.0
    assert "probe" in str(servers)
    for _, writer in idle:
        writer.close()


async def test_a_16mib_frame_on_the_periphery_path_is_refused_from_its_header(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"ws://127.0.0.1:{core.port}/ws/periphery")
        try:
            await ws.send_bytes(bytes(16 * 1024 * 1024))
        except ConnectionError:
            pass  # closed while we were still sending: as it should
        with anyio.fail_after(10):
            msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code in (1009, 1006)  # 1006: reset while still sending
    assert "Message size 16777216 exceeds limit 4097" in caplog.text  # from the header
    assert await probe_dials_in(core) < 1.0
