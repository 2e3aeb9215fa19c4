"""Channel benchmark: stackward's channel against a plain aiohttp websocket, same loopback.

Both servers run as separate processes (a real ``stackward periphery``, and
``bench/raw_ws_server.py``). In one run it measures:

- serial round trips/s: one request at a time (``Echo`` against a raw echo frame);
- round trips/s with 64 in flight;
- streaming: MiB/s of a periphery command's stdout reaching the core (``head -c N /dev/zero``)
  against raw websocket bulk transfer of the same bytes in 64 KiB frames;
- the idle periphery's resident memory.

Targets: serial ≥ 0.75×, 64 in flight ≥ 0.7×, streaming ≥ 0.5× raw, idle RSS ≤ 45 MiB.
Run: ``python bench/channel.py [--quick]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.pool import PeripheryPool, ServerEndpoint  # noqa: E402
from protocol.memory import keep_large_buffers  # noqa: E402
from protocol.messages import Echo, Run  # noqa: E402
from tests.support.processes import Periphery, make_key  # noqa: E402

PAYLOAD = b"x" * 64
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def raw_serial(session: aiohttp.ClientSession, url: str, n: int) -> float:
    async with session.ws_connect(url + "/echo", compress=0) as ws:
        started = time.perf_counter()
        for _ in range(n):
            await ws.send_bytes(PAYLOAD)
            await ws.receive()
        return n / (time.perf_counter() - started)


async def raw_window(session: aiohttp.ClientSession, url: str, n: int, window: int) -> float:
    async with session.ws_connect(url + "/echo", compress=0) as ws:
        started = time.perf_counter()
        for _ in range(window):
            await ws.send_bytes(PAYLOAD)
        sent, received = window, 0
        while received < n:
            await ws.receive()
            received += 1
            if sent < n:
                await ws.send_bytes(PAYLOAD)
                sent += 1
        return n / (time.perf_counter() - started)


async def raw_bulk(session: aiohttp.ClientSession, url: str, total: int) -> float:
    started = time.perf_counter()
    got = 0
    async with session.ws_connect(
        f"{url}/bulk?bytes={total}&chunk={64 * 1024}", compress=0, max_msg_size=16 * MIB
    ) as ws:
        async for msg in ws:
            got += len(msg.data)
    assert got >= total
    return got / MIB / (time.perf_counter() - started)


async def sw_serial(channel, n: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(n):
        await channel.request(Echo(data=PAYLOAD))
    return n / (time.perf_counter() - started)


async def sw_window(channel, n: int, window: int) -> float:  # type: ignore[no-untyped-def]
    per_worker = n // window

    async def worker() -> None:
        for _ in range(per_worker):
            await channel.request(Echo(data=PAYLOAD))

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(window):
            tg.start_soon(worker)
    return per_worker * window / (time.perf_counter() - started)


async def sw_stream(channel, total: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    got = 0
    async with channel.call(Run(argv=["head", "-c", str(total), "/dev/zero"])) as call:
        async for chunk in call:
            got += len(chunk.data)
    assert got == total, (got, total)
    return got / MIB / (time.perf_counter() - started)


def line(name: str, ours: float, raw: float, unit: str, target: float) -> bool:
    ratio = ours / raw
    ok = ratio >= target
    print(
        f"{name:<22} stackward {ours:>10.1f} {unit:<6} raw {raw:>10.1f} {unit:<6} "
        f"ratio {ratio:.2f}  (target ≥ {target:.2f}) {'ok' if ok else 'MISSED'}"
    )
    return ok


async def main(quick: bool) -> int:
    n_serial = 2000 if quick else 5000
    n_window = 10000 if quick else 30000
    total = (64 if quick else 256) * MIB
    rounds = 3 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        core = make_key(work / "core.key")
        periphery = Periphery(work / "p", core)
        periphery.start_and_wait()
        port = free_port()
        raw = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [sys.executable, str(Path(__file__).with_name("raw_ws_server.py")), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        raw_url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                with anyio.fail_after(10):
                    while True:
                        try:
                            async with session.get(raw_url + "/none"):
                                break
                        except aiohttp.ClientConnectionError:
                            await anyio.sleep(0.05)
                async with PeripheryPool(core.key) as pool:
                    pool.set_servers([ServerEndpoint("p", periphery.keys.public, periphery.url)])
                    channel = await pool.channel("p")
                    idle_rss = rss_mib(periphery.proc.pid)  # type: ignore[union-attr]
                    # warm up both
                    await sw_serial(channel, 200)
                    await raw_serial(session, raw_url, 200)
                    results = []
                    print(
                        f"# loopback, 64-byte payloads; {os.cpu_count()} cores; median of "
                        f"{rounds} interleaved rounds each"
                    )

                    async def measure(ours, raw):  # type: ignore[no-untyped-def]
                        pairs = [(await ours(), await raw()) for _ in range(rounds)]
                        return (
                            statistics.median(p[0] for p in pairs),
                            statistics.median(p[1] for p in pairs),
                        )

                    results.append(
                        line(
                            "serial round trips/s",
                            *await measure(
                                lambda: sw_serial(channel, n_serial),
                                lambda: raw_serial(session, raw_url, n_serial),
                            ),
                            "rt/s",
                            0.75,
                        )
                    )
                    results.append(
                        line(
                            "64 in flight rt/s",
                            *await measure(
                                lambda: sw_window(channel, n_window, 64),
                                lambda: raw_window(session, raw_url, n_window, 64),
                            ),
                            "rt/s",
                            0.70,
                        )
                    )
                    results.append(
                        line(
                            "stdout streaming",
                            *await measure(
                                lambda: sw_stream(channel, total),
                                lambda: raw_bulk(session, raw_url, total),
                            ),
                            "MiB/s",
                            0.50,
                        )
                    )
            ok = idle_rss <= 45
            print(
                f"idle periphery RSS     {idle_rss:.1f} MiB (target ≤ 45 MiB) "
                f"{'ok' if ok else 'MISSED'}"
            )
            results.append(ok)
        finally:
            raw.terminate()
            raw.wait()
            periphery.stop()
    return 0 if all(results) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    logging.basicConfig(level=logging.ERROR)
    keep_large_buffers()  # as `stackward core` does at start (this process is the core here)
    sys.exit(anyio.run(main, parser.parse_args().quick))
