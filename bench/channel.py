"""Channel benchmark: stackward's channel against a plain aiohttp websocket, same loopback.

Both servers run as separate processes (a real ``stackward periphery``, and
``bench/raw_ws_server.py``). In one run it measures:

- serial round trips/s: one request at a time (``Echo`` against a raw echo frame);
- round trips/s with 64 in flight;
- streaming: MiB/s of a periphery command's stdout reaching the core (``head -c N /dev/zero``)
  against the same command's stdout sent by a plain aiohttp websocket server as it reads it
  (``/run``: the same pipe, reads and write buffer as the periphery, nothing of the channel), so
  the ratio is what the channel costs (framing, sealing both ways, flow control);
- for scale, the same stream against raw in-memory bulk (``/bulk``: the same bytes in 64 KiB
  frames, no command, no pipe). No target: on 2 cores the command and its pipe (``head``'s
  writes, the agent's reads) and ChaCha20-Poly1305 both ways (about 0.3 s of CPU per GiB on each
  side) are work the in-memory sender does not do;
- the idle periphery's resident memory.

Targets: serial ≥ 0.75×, 64 in flight ≥ 0.7×, streaming ≥ 0.5× raw, idle RSS ≤ 45 MiB.
Run: ``python bench/channel.py [--quick] [--only serial|window|stream|bulk]``.
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
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.pool import PeripheryPool, ServerEndpoint  # noqa: E402
from protocol.memory import keep_large_buffers  # noqa: E402
from protocol.messages import Echo, Run  # noqa: E402
from tests.support.processes import Periphery, make_key  # noqa: E402

PAYLOAD = b"x" * 64
Rate = Callable[[], Awaitable[float]]
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


async def raw_stream(session: aiohttp.ClientSession, url: str, total: int) -> float:
    """MiB/s of ``total`` bytes from a raw server's endpoint (``/bulk?…`` or ``/run?…``)."""
    started = time.perf_counter()
    got = 0
    async with session.ws_connect(url, compress=0, max_msg_size=16 * MIB) as ws:
        async for msg in ws:
            got += len(msg.data)
    assert got == total, (got, total)
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


def line(name: str, ours: float, raw: float, unit: str, target: float | None) -> bool:
    ratio = ours / raw
    ok = target is None or ratio >= target
    verdict = (
        "(for scale, no target)"
        if target is None
        else (f"(target ≥ {target:.2f}) {'ok' if ok else 'MISSED'}")
    )
    print(
        f"{name:<22} stackward {ours:>10.1f} {unit:<6} raw {raw:>10.1f} {unit:<6} "
        f"ratio {ratio:.2f}  {verdict}"
    )
    return ok


async def main(quick: bool, only: str | None) -> int:
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

                    async def measure(ours: Rate, raw: Rate) -> tuple[float, float]:
                        pairs = [(await ours(), await raw()) for _ in range(rounds)]
                        return (
                            statistics.median(p[0] for p in pairs),
                            statistics.median(p[1] for p in pairs),
                        )

                    figures: dict[str, tuple[str, Rate, Rate, str, float | None]] = {
                        "serial": (
                            "serial round trips/s",
                            lambda: sw_serial(channel, n_serial),
                            lambda: raw_serial(session, raw_url, n_serial),
                            "rt/s",
                            0.75,
                        ),
                        "window": (
                            "64 in flight rt/s",
                            lambda: sw_window(channel, n_window, 64),
                            lambda: raw_window(session, raw_url, n_window, 64),
                            "rt/s",
                            0.70,
                        ),
                        "stream": (
                            "stdout streaming",
                            lambda: sw_stream(channel, total),
                            lambda: raw_stream(session, f"{raw_url}/run?bytes={total}", total),
                            "MiB/s",
                            0.50,
                        ),
                        "bulk": (
                            "stdout vs memory bulk",
                            lambda: sw_stream(channel, total),
                            lambda: raw_stream(
                                session, f"{raw_url}/bulk?bytes={total}&chunk={64 * 1024}", total
                            ),
                            "MiB/s",
                            None,
                        ),
                    }
                    for key, (name, ours, theirs, unit, target) in figures.items():
                        if only in (None, key):
                            mine, plain = await measure(ours, theirs)
                            results.append(line(name, mine, plain, unit, target))
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
    parser.add_argument("--only", choices=["serial", "window", "stream", "bulk"], help="one figure")
    logging.basicConfig(level=logging.ERROR)
    keep_large_buffers()  # as `stackward core` does at start (this process is the core here)
    args = parser.parse_args()
    sys.exit(anyio.run(main, args.quick, args.only))
