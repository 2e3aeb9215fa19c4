"""``/ws/events`` over real loopback: a real core (``serve``, SQLite in a temp dir), events
published on its bus, subscribers as real websocket clients."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest

from core.api.state import CORE
from core.config import load_config
from core.events.bus import EventBus
from core.events.model import DeployOutput, Kind
from tests.support.core_server import start_core
from tests.support.processes import write_toml

pytestmark = pytest.mark.anyio

TOKEN = "events-token-0123456789abcdef"
ORIGIN = "https://dash.example.org"


@dataclass
class Core:
    url: str
    bus: EventBus

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws/events"

    def publish(self, n: int, text: str = "line", stack: str = "web") -> list[int]:
        return [
            self.bus.publish(
                Kind.DEPLOY_OUTPUT,
                f"stack:{stack}",
                DeployOutput(
                    deploy=1, stack=stack, step="deploy", stream="stdout", seq=i, text=text
                ),
            ).id
            for i in range(n)
        ]


@pytest.fixture
async def core(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Core]:
    config = load_config(
        write_toml(
            tmp_path / "core.toml",
            {
                "listen": "127.0.0.1:0",
                "data_dir": str(tmp_path / "data"),
                "api_tokens": [TOKEN],
                "event_origins": [ORIGIN],
                "poll_interval": 0,
                **getattr(request, "param", {}),
            },
        )
    )
    async with anyio.create_task_group() as tg:
        port, app = await start_core(tg, config)
        yield Core(f"http://127.0.0.1:{port}", app[CORE].events)
        tg.cancel_scope.cancel()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def collect(
    ws: aiohttp.ClientWebSocketResponse, count: int, within: float = 10, controls: bool = True
) -> list[Any]:
    """The next ``count`` messages, JSON format (without ``controls``: events only)."""
    out: list[Any] = []
    with anyio.fail_after(within):
        while len(out) < count:
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            message = msgspec.json.decode(msg.data)
            if controls or "control" not in message:
                out.append(message)
    return out


async def test_the_core_announces_itself_and_events_have_the_documented_shape(core: Core) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(core.ws + "?since=0", headers=auth()) as ws,
    ):
        first, live = await collect(ws, 2)
        assert first["kind"] == "core.started" and first["id"] >= 1
        assert set(first) == {"id", "time", "kind", "resource", "data"}
        assert live == {"control": "live", "last": first["id"]}
        [ids] = [core.publish(1, "hello")]
        [event] = await collect(ws, 1)
        assert event["id"] == ids[0] and event["kind"] == "deploy.output"
        assert event["resource"] == "stack:web" and event["data"]["text"] == "hello"
        assert abs(event["time"] - time.time()) < 5
    async with aiohttp.ClientSession() as s, s.get(core.url + "/healthz") as r:
        assert r.status == 200


async def test_authentication_by_header_or_first_message_and_the_origin_allowlist(
    core: Core,
) -> None:
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as bad_header:
            await s.ws_connect(core.ws, headers={"Authorization": "Bearer wrong-token-xxxxxxxx"})
        assert bad_header.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as bad_origin:
            await s.ws_connect(core.ws, headers={**auth(), "Origin": "https://evil.example"})
        assert bad_origin.value.status == 403
        # A wrong first-message token: closed with 4401, and no event was sent before.
        async with s.ws_connect(core.ws + "?since=0", origin=ORIGIN) as ws:
            await ws.send_str('{"token": "not-the-token-at-all"}')
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 4401
        # The right one (a browser: allowed Origin, token first): the stream starts.
        async with s.ws_connect(core.ws + "?since=0&kind=core", origin=ORIGIN) as ws:
            await ws.send_str(msgspec.json.encode({"token": TOKEN}).decode())
            first, _ = await collect(ws, 2)
            assert first["kind"] == "core.started"


async def test_failed_logins_are_rate_limited_per_address(core: Core) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(20):
            with pytest.raises(aiohttp.WSServerHandshakeError) as wrong:
                await s.ws_connect(core.ws, headers={"Authorization": "Bearer wrong-wrong-wrong"})
            assert wrong.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(core.ws, headers={"Authorization": "Bearer wrong-wrong-wrong"})
        assert refused.value.status == 429
        # The right token from the same address (NAT, a proxy) still passes.
        async with s.ws_connect(core.ws + "?since=0&kind=core", headers=auth()) as ws:
            (first,) = await collect(ws, 1)
            assert first["kind"] == "core.started"


async def test_a_subscriber_resumes_with_since_without_a_gap_or_a_duplicate(core: Core) -> None:
    ids = core.publish(30)
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(core.ws + f"?since={ids[0] - 1}&kind=deploy", headers=auth()) as ws:
            seen = [e["id"] for e in await collect(ws, 10, controls=False)]
        assert seen == ids[:10]
        ids += core.publish(20)  # while it was away
        async with s.ws_connect(core.ws + f"?since={seen[-1]}&kind=deploy", headers=auth()) as ws:
            replay = await collect(ws, 41)  # 40 replayed, then "live"
            assert [e["id"] for e in replay[:40]] == ids[10:]
            assert replay[40] == {"control": "live", "last": ids[-1]}
            ids += core.publish(5)
            assert [e["id"] for e in await collect(ws, 5)] == ids[-5:]


async def test_filters_by_kind_and_stack_and_msgpack_batches(core: Core) -> None:
    async with aiohttp.ClientSession() as s:
        url = core.ws + "?stack=db&format=msgpack"
        async with s.ws_connect(url, headers=auth()) as ws:
            core.publish(5, stack="web")
            wanted = core.publish(5, stack="db")
            got: list[dict[str, Any]] = []
            with anyio.fail_after(10):
                while len(got) < 5:
                    msg = await ws.receive()
                    assert msg.type is aiohttp.WSMsgType.BINARY
                    batch = msgspec.msgpack.decode(msg.data)
                    if isinstance(batch, dict):  # the "live" control message
                        assert batch["control"] == "live"
                        continue
                    assert isinstance(batch, list) and batch  # an array of one or more events
                    got += batch
            assert [e["id"] for e in got] == wanted
            assert {e["resource"] for e in got} == {"stack:db"}


async def test_bad_parameters_are_refused_before_the_upgrade(core: Core) -> None:
    async with aiohttp.ClientSession() as s:
        for query in ("format=xml", "since=abc", "lag=maybe"):
            async with s.get(core.ws + "?" + query, headers=auth()) as r:
                assert r.status == 400
                body = await r.json()
                assert query.split("=")[0] in body["error"]["message"]


def raw_subscriber(url: str, query: str) -> socket.socket:
    """A websocket client that sends its upgrade and then never reads another byte."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        (
            f"GET /ws/events?{query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        ).encode()
    )
    return sock


@pytest.mark.parametrize("core", [{"event_queue": 16}], indirect=True)
async def test_a_subscriber_that_never_reads_is_lagged_and_slows_nothing(core: Core) -> None:
    stuck = raw_subscriber(core.url, "kind=deploy")
    try:
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(core.ws + "?kind=deploy", headers=auth()) as healthy:
                await anyio.sleep(0.2)
                # Publishing 32 MiB while one subscriber reads nothing: the publisher never waits
                # (measured), the reading subscriber gets everything in order.
                big = "x" * 64 * 1024
                ids: list[int] = []
                got: list[int] = []
                publish_seconds = 0.0

                async def read_all() -> None:
                    got.extend(
                        e["id"] for e in await collect(healthy, 512, within=30, controls=False)
                    )

                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_all)
                    for _ in range(64):
                        t0 = time.perf_counter()
                        ids += core.publish(8, big)
                        publish_seconds += time.perf_counter() - t0
                        await anyio.sleep(0.02)
                assert got == ids
                assert publish_seconds < 1.0, publish_seconds  # a few µs an event; no waiting
                [stuck_sub] = [x for x in core.bus.subscribers() if x.dropped]
                assert stuck_sub.dropped > 0  # what /metrics reports per subscriber
        # It starts reading at last: its queue, then "lagged" naming exactly what it missed.
        stuck.settimeout(10)
        reader = await _read_ws_frames(stuck, until_control="lagged")
        events = [m for m in reader if "id" in m]
        lagged = next(m for m in reader if m.get("control") == "lagged")
        assert events and [e["id"] for e in events] == list(range(ids[0], events[-1]["id"] + 1))
        assert lagged["first"] == events[-1]["id"] + 1
        assert lagged["last"] == ids[-1]
        assert lagged["count"] == lagged["last"] - lagged["first"] + 1
    finally:
        stuck.close()


async def _read_ws_frames(sock: socket.socket, until_control: str) -> list[dict[str, Any]]:
    """Read raw websocket frames (text, unmasked, from the server) until a control message."""

    def read() -> list[dict[str, Any]]:
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        buf = buf.split(b"\r\n\r\n", 1)[1]
        out: list[dict[str, Any]] = []

        def need(n: int) -> None:
            nonlocal buf
            while len(buf) < n:
                chunk = sock.recv(1 << 20)
                assert chunk, "closed"
                buf += chunk

        while True:
            need(2)
            opcode = buf[0] & 0x0F
            length = buf[1] & 0x7F
            head = 2
            if length == 126:
                need(4)
                length, head = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                need(10)
                length, head = int.from_bytes(buf[2:10], "big"), 10
            need(head + length)
            payload, buf = buf[head : head + length], buf[head + length :]
            if opcode != 0x1:  # pings and the like
                continue
            message = msgspec.json.decode(payload)
            out.append(message)
            if message.get("control") == until_control:
                return out

    return await anyio.to_thread.run_sync(read)


SEND_TIMEOUT = 1.0


@pytest.mark.parametrize(
    "core", [{"event_queue": 16, "event_send_timeout": SEND_TIMEOUT}], indirect=True
)
@pytest.mark.parametrize("lag", ["report", "close"])
async def test_a_stuck_subscriber_loses_its_socket_within_two_send_timeouts(
    core: Core, lag: str
) -> None:
    """A subscriber that stops reading cannot be closed politely (the close frame waits behind
    what it did not read): the core drops the connection, kernel buffers and all, within two
    send timeouts of the moment it stopped taking events."""
    stuck = raw_subscriber(core.url, f"kind=deploy&lag={lag}")
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        await anyio.sleep(0.2)
        big = "x" * 64 * 1024
        # Fill every buffer between the core and the stuck client, then keep publishing.
        started = time.monotonic()
        gone_at = 0.0
        while time.monotonic() - started < 4 * SEND_TIMEOUT + 2:
            core.publish(4, big)
            await anyio.sleep(0.05)
            if not core.bus.subscribers():
                gone_at = time.monotonic()
                break
        assert gone_at, "the stuck subscriber is still registered"
        assert gone_at - started <= 2 * SEND_TIMEOUT + 1.5, gone_at - started

        def drained() -> bool:
            """Read what is left: the socket ends (EOF or reset) instead of blocking."""
            stuck.settimeout(5)
            try:
                while stuck.recv(1 << 20):
                    pass
            except ConnectionResetError:
                pass
            return True

        t = time.monotonic()
        assert await anyio.to_thread.run_sync(drained)
        assert time.monotonic() - t < 1.0  # reset at once: nothing of it lingers
    finally:
        stuck.close()


@pytest.mark.parametrize("core", [{"event_queue": 16}], indirect=True)
async def test_lag_close_ends_the_subscription_with_1013(core: Core) -> None:
    stuck = raw_subscriber(core.url, "kind=deploy&lag=close")
    try:
        await anyio.sleep(0.2)
        core.publish(256, "y" * 64 * 1024)
        stuck.settimeout(10)

        def read_until_close() -> int:
            data = b""
            while True:
                chunk = stuck.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
                i = data.find(b"\x88")  # a close frame: 0x88, len, code
                while i != -1:
                    if len(data) >= i + 4 and data[i + 1] & 0x7F >= 2:
                        code = int.from_bytes(data[i + 2 : i + 4], "big")
                        if code == 1013:
                            return code
                    i = data.find(b"\x88", i + 1)
            return 0

        assert await anyio.to_thread.run_sync(read_until_close) == 1013
    finally:
        stuck.close()


async def test_a_hundred_subscribers_receive_identical_ordered_streams(core: Core) -> None:
    streams: list[list[int]] = [[] for _ in range(100)]
    async with aiohttp.ClientSession() as s:
        sockets = [await s.ws_connect(core.ws + "?kind=deploy", headers=auth()) for _ in range(100)]
        await anyio.sleep(0.3)
        ids: list[int] = []

        async def subscriber(i: int) -> None:
            with anyio.fail_after(30):
                while len(streams[i]) < 500:
                    msg = await sockets[i].receive()
                    message = msgspec.json.decode(msg.data)
                    if "id" in message:
                        streams[i].append(message["id"])

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(subscriber, i)
            for _ in range(10):
                ids += core.publish(50)
                await anyio.sleep(0.01)
        for ws in sockets:
            await ws.close()
    assert all(stream == ids for stream in streams)
