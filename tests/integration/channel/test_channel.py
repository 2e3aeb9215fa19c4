"""The channel over real loopback, against a real ``stackward periphery`` process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import anyio
import pytest

from core.exceptions import PeripheryUnavailable
from core.pool import PeripheryPool, PoolSettings, ServerEndpoint
from protocol.exceptions import ChannelClosed
from protocol.messages import PROTOCOL_VERSION, Echo, ErrorCode, Health, HealthReport, Run, Stream
from protocol.transport import ChannelSettings, CoreChannel
from tests.support.processes import KeyPair
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

FAST = PoolSettings(
    channel=ChannelSettings(heartbeat_interval=0.5, connect_timeout=3.0),
    reconnect_initial_delay=0.05,
    reconnect_max_delay=0.5,
)


async def connect(pool: PeripheryPool, periphery, wait: float = 10.0) -> CoreChannel:  # type: ignore[no-untyped-def]
    pool.set_servers([ServerEndpoint("p1", periphery.keys.public, periphery.url)])
    return await pool.channel("p1", wait)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists"; it is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_health_reports_version_and_host(core_keys: KeyPair, periphery_factory) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    async with PeripheryPool(core_keys.key, FAST) as pool:
        channel = await connect(pool, periphery)
        result, _ = await channel.request(Health())
    assert result.error is None
    assert isinstance(result.value, HealthReport)
    assert result.value.hostname == os.uname().nodename
    assert result.value.protocol == PROTOCOL_VERSION == 2
    assert result.value.docker or result.value.docker_error  # answers either way


async def test_output_streams_in_order_while_the_command_runs(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    script = "echo first; echo oops >&2; sleep 1; echo second; exit 7"
    async with PeripheryPool(core_keys.key, FAST) as pool:
        channel = await connect(pool, periphery)
        started = time.monotonic()
        arrivals: list[tuple[float, Stream, bytes]] = []
        async with channel.call(Run(argv=["sh", "-c", script])) as call:
            async for chunk in call:
                arrivals.append((time.monotonic() - started, chunk.stream, bytes(chunk.data)))
            result = call.result
    assert result is not None and result.exit_code == 7
    stdout = b"".join(d for _, s, d in arrivals if s is Stream.STDOUT)
    assert stdout == b"first\nsecond\n"
    assert b"".join(d for _, s, d in arrivals if s is Stream.STDERR) == b"oops\n"
    first_at = next(t for t, s, d in arrivals if d.startswith(b"first"))
    assert first_at < 0.8, "the first line must arrive before the command ends"


async def test_bulk_output_arrives_intact_alone_together_and_to_a_slow_reader(
    core_keys: KeyPair, periphery_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # The agent reads output into its buffers and reuses one once nothing else holds it
    # (periphery/process.py): random bytes, not zeros, must arrive byte for byte when a chunk
    # goes straight out, when several requests share the socket (queued chunks), and when the
    # core reads slowly (the transport keeps what the socket did not take).
    data = os.urandom(24 * 1024 * 1024)
    source = tmp_path / "random.bin"
    source.write_bytes(data)
    periphery = periphery_factory.start()

    async def fetch(channel: CoreChannel, pause: float = 0.0) -> bytes:
        got = bytearray()
        async with channel.call(Run(argv=["cat", str(source)])) as call:
            async for chunk in call:
                got += chunk.data
                if pause:
                    await anyio.sleep(pause)
        assert call.result is not None and call.result.exit_code == 0
        return bytes(got)

    async with PeripheryPool(core_keys.key, FAST) as pool:
        channel = await connect(pool, periphery)
        with anyio.fail_after(30):
            assert await fetch(channel) == data
        together: list[bytes] = []

        async def one() -> None:
            together.append(await fetch(channel))

        # three senders at once wait for room in the agent's outbox: each must be woken
        # (one wakeup for one waiter lost the others, and the calls hung)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(one)
        assert together == [data] * 3
        with anyio.fail_after(60):
            assert await fetch(channel, pause=0.01) == data


async def test_cancel_kills_the_command_and_its_children(
    core_keys: KeyPair, periphery_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    pidfile = periphery.workdir / "root" / "child.pid"
    script = "sleep 300 & echo $! > child.pid; echo started; wait"
    async with PeripheryPool(core_keys.key, FAST) as pool:
        channel = await connect(pool, periphery)
        async with channel.call(Run(argv=["sh", "-c", script])) as call:
            async for chunk in call:
                if b"started" in bytes(chunk.data):
                    await call.cancel()
            result = call.result
    assert result is not None and result.error is not None
    assert result.error.code is ErrorCode.CANCELLED
    child = int(pidfile.read_text())
    await eventually(lambda: not pid_alive(child), within=5)


async def test_a_timeout_kills_the_command(core_keys: KeyPair, periphery_factory) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    async with PeripheryPool(core_keys.key, FAST) as pool:
        channel = await connect(pool, periphery)
        started = time.monotonic()
        result, _ = await channel.request(Run(argv=["sleep", "30"], timeout=0.5))
    assert result.error is not None and result.error.code is ErrorCode.TIMEOUT
    assert time.monotonic() - started < 5


async def test_fifty_concurrent_requests(core_keys: KeyPair, periphery_factory) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    outputs: dict[int, bytes] = {}
    async with PeripheryPool(core_keys.key, FAST) as pool:
        channel = await connect(pool, periphery)

        async def one(i: int) -> None:
            result, chunks = await channel.request(
                Run(argv=["sh", "-c", f"sleep 0.2; echo {i}; exit {i % 5}"])
            )
            assert result.exit_code == i % 5
            outputs[i] = b"".join(c.data for c in chunks)

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
        elapsed = time.monotonic() - started
    assert outputs == {i: f"{i}\n".encode() for i in range(50)}
    assert elapsed < 5, f"50 requests of 0.2 s each ran serially? {elapsed:.1f}s"


async def test_requests_beyond_the_in_flight_bound_are_refused(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start(max_in_flight=2)
    # The core side is told a larger bound, so the periphery's own bound is what refuses.
    settings = PoolSettings(channel=ChannelSettings(max_in_flight=10))
    async with PeripheryPool(core_keys.key, settings) as pool:
        channel = await connect(pool, periphery)
        codes: list[ErrorCode | None] = []

        async def one() -> None:
            result, _ = await channel.request(Run(argv=["sleep", "0.5"]))
            codes.append(result.error.code if result.error else None)

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one)
    assert codes.count(None) == 2
    assert codes.count(ErrorCode.BUSY) == 2


async def test_cwd_outside_the_root_is_refused(core_keys: KeyPair, periphery_factory) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    async with PeripheryPool(core_keys.key, FAST) as pool:
        channel = await connect(pool, periphery)
        for cwd in ("..", "/etc", "../../tmp"):
            result, chunks = await channel.request(Run(argv=["touch", "escaped"], cwd=cwd))
            assert result.error is not None and result.error.code is ErrorCode.FORBIDDEN_PATH
            assert chunks == []
    assert not (periphery.workdir / "escaped").exists()


async def test_env_reaches_the_command_and_a_missing_program_is_typed(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    async with PeripheryPool(core_keys.key, FAST) as pool:
        channel = await connect(pool, periphery)
        result, chunks = await channel.request(
            Run(argv=["sh", "-c", 'printf %s "$GREETING"'], env={"GREETING": "hej"})
        )
        assert b"".join(c.data for c in chunks) == b"hej"
        result, _ = await channel.request(Run(argv=["/no/such/program"]))
        assert result.error is not None and result.error.code is ErrorCode.SPAWN_FAILED


async def test_a_dead_periphery_is_detected_within_two_heartbeats(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start(heartbeat_interval=0.5)
    async with PeripheryPool(core_keys.key, FAST) as pool:
        channel = await connect(pool, periphery)
        async with channel.call(Run(argv=["sleep", "30"])) as call:
            periphery.signal(signal.SIGSTOP)  # alive to TCP, silent to us
            stopped = time.monotonic()
            with pytest.raises(ChannelClosed):
                async for _ in call:
                    pass
            detected = time.monotonic() - stopped
        periphery.signal(signal.SIGCONT)
    assert channel.closed
    assert 0.4 <= detected <= 1.0 + 0.3, f"detected after {detected:.2f}s; interval 0.5s"


async def test_the_pool_reconnects_after_the_periphery_restarts(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    port = periphery.url.rsplit(":", 1)[1].split("/")[0]
    async with PeripheryPool(core_keys.key, FAST) as pool:
        first = await connect(pool, periphery)
        assert (await first.request(Echo(data=b"a")))[0].value.data == b"a"
        periphery.stop()
        with anyio.fail_after(5):
            await first.wait_closed()
        with pytest.raises(PeripheryUnavailable):
            await pool.channel("p1", 0.3)
        periphery.rewrite(listen=f"127.0.0.1:{port}")
        await anyio.to_thread.run_sync(periphery.start_and_wait)
        second = await pool.channel("p1", 10)
        assert second is not first
        assert (await second.request(Echo(data=b"b")))[0].value.data == b"b"


async def test_a_live_peer_with_a_slower_heartbeat_is_not_declared_dead(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start(heartbeat_interval=10.0)
    settings = PoolSettings(channel=ChannelSettings(heartbeat_interval=0.3))
    async with PeripheryPool(core_keys.key, settings) as pool:
        channel = await connect(pool, periphery)
        result, _ = await channel.request(Run(argv=["sleep", "1.5"]))
    assert result.exit_code == 0
    assert not any("dead" in line for line in periphery.lines)
