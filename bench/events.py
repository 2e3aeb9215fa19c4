"""Event stream benchmark, on loopback, subscribers in separate processes.

(a) **Latency**: 100 subscribers of ``/ws/events`` (msgpack), events published at 200/s for
    10 s on a real core's bus: p50 and p99 from publish to receipt, and the share delivered.
(b) **Saturation**: events/s delivered to each of 100 subscribers, as fast as the publisher can
    go without any subscriber falling behind, against a plain aiohttp websocket broadcast of
    messages of the same size (one ``send_bytes`` per message per client) in the same run.
(c) **Webhook to periphery**: a signed GitHub push to a real core's listener, to the moment the
    deploy command (``Checkout``) reaches a real periphery agent over its channel: for a stack
    webhook (the push names the commit: the core fetches nothing) and for a sync webhook (the
    core fetches the repository, plans and applies first; the fetch is reported on its own line
    and the figure is the time beyond it).

Run: ``python bench/events.py`` (no Docker engine needed). Targets: (a) p99 ≤ 100 ms, all
delivered; (b) ≥ 0.6×; (c) p50 ≤ 20 ms beyond the git fetch.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import anyio  # noqa: E402
import anyio.lowlevel  # noqa: E402
import msgspec  # noqa: E402
from aiohttp import web  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
SECRET = "bench-webhook-secret"


# ---------------------------------------------------------------------------------- workers


async def worker(url: str, conns: int, expect: int, raw: bool) -> None:
    """Open ``conns`` subscribers, print "ready", count ``expect`` events each, print results."""
    latencies: list[float] = []
    done_at: list[float] = []
    counts = [0] * conns
    async with aiohttp.ClientSession() as session:
        sockets = []
        for _ in range(conns):
            headers = {"Authorization": f"Bearer {TOKEN}"}
            sockets.append(await session.ws_connect(url, headers=headers, max_msg_size=0))
        print("ready", flush=True)

        async def one(i: int) -> None:
            ws = sockets[i]
            sample = i == 0  # latency from one subscriber a process: the others cost the same
            async for msg in ws:
                now = time.time()
                if raw:
                    counts[i] += 1
                else:
                    batch = msgspec.msgpack.decode(msg.data)
                    if isinstance(batch, dict):  # a control message ("live")
                        continue
                    counts[i] += len(batch)
                    if sample:
                        latencies.extend(now - e["time"] for e in batch)
                if counts[i] >= expect:
                    done_at.append(now)
                    return

        with anyio.move_on_after(120):
            async with anyio.create_task_group() as tg:
                for i in range(conns):
                    tg.start_soon(one, i)
        for ws in sockets:
            await ws.close()
    print(
        json.dumps({"counts": counts, "latencies": latencies, "done": max(done_at, default=0)}),
        flush=True,
    )


class Workers:
    def __init__(self, url: str, total: int, procs: int, expect: int, raw: bool) -> None:
        per = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    url,
                    "--conns",
                    str(n),
                    "--expect",
                    str(expect),
                    *(["--raw"] if raw else []),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in per
        ]

    async def ready(self) -> None:
        for p in self.procs:
            assert p.stdout is not None
            line = await anyio.to_thread.run_sync(p.stdout.readline)
            assert line.strip() == "ready", line

    async def results(self) -> list[dict[str, Any]]:
        out = []
        for p in self.procs:
            assert p.stdout is not None
            text = await anyio.to_thread.run_sync(p.stdout.read)
            await anyio.to_thread.run_sync(p.wait)
            out.append(json.loads(text.strip().splitlines()[-1]))
        return out


# ---------------------------------------------------------------------------- (a) and (b)


def core_config(tmp: Path, **extra: Any) -> Any:
    from core.config import load_config
    from tests.support.processes import write_toml

    return load_config(
        write_toml(
            tmp / "core.toml",
            {
                "listen": "127.0.0.1:0",
                "data_dir": str(tmp / "data"),
                "api_tokens": [TOKEN],
                "poll_interval": 0,
                **extra,
            },
        )
    )


async def start_core(tg: anyio.abc.TaskGroup, config: Any) -> tuple[int, web.Application]:
    from tests.support.core_server import start_core as start

    return await start(tg, config)


def payload(i: int) -> Any:
    from core.events.model import DeployOutput

    text = f"Step {i}/12 : RUN apk add --no-cache curl ca-certificates tzdata && echo done"
    return DeployOutput(deploy=1, stack="media", step="deploy", stream="stdout", seq=i, text=text)


async def latency(args: argparse.Namespace) -> tuple[float, float, float]:
    from core.api.state import CORE
    from core.events.model import Kind

    total = args.rate * args.seconds
    with tempfile.TemporaryDirectory() as tmp:
        async with anyio.create_task_group() as tg:
            port, app = await start_core(tg, core_config(Path(tmp), event_queue=4096))
            bus = app[CORE].events
            url = f"ws://127.0.0.1:{port}/ws/events?kind=deploy&format=msgpack"
            workers = Workers(url, args.subscribers, args.procs, total, raw=False)
            await workers.ready()
            await anyio.sleep(0.5)
            start = time.perf_counter()
            for i in range(total):
                delay = start + i / args.rate - time.perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
                bus.publish(Kind.DEPLOY_OUTPUT, "stack:media", payload(i))
            results = await workers.results()
            tg.cancel_scope.cancel()
    lat = sorted(x for r in results for x in r["latencies"])
    delivered = sum(sum(r["counts"]) for r in results) / (total * args.subscribers)
    p50 = lat[len(lat) // 2] * 1000
    p99 = lat[int(len(lat) * 0.99)] * 1000
    return p50, p99, delivered


async def saturation_stackward(args: argparse.Namespace) -> float:
    from core.api.state import CORE
    from core.events.model import Kind

    n = args.burst
    with tempfile.TemporaryDirectory() as tmp:
        async with anyio.create_task_group() as tg:
            port, app = await start_core(tg, core_config(Path(tmp), event_queue=4096))
            bus = app[CORE].events
            url = f"ws://127.0.0.1:{port}/ws/events?kind=deploy&format=msgpack"
            workers = Workers(url, args.subscribers, args.procs, n, raw=False)
            await workers.ready()
            await anyio.sleep(0.5)
            start = time.time()
            for i in range(n):
                bus.publish(Kind.DEPLOY_OUTPUT, "stack:media", payload(i))
                if i % 64 == 63:  # as fast as no subscriber falls behind
                    while max(len(s.queue) for s in bus.subscribers()) > 2048:  # noqa: ASYNC110
                        await anyio.sleep(0.0005)
                    await anyio.lowlevel.checkpoint()
            results = await workers.results()
            tg.cancel_scope.cancel()
    assert all(c == n for r in results for c in r["counts"]), "an event went missing"
    dropped = sum(s.dropped for s in bus.subscribers()) + bus.dropped_gone
    assert dropped == 0, f"{dropped} dropped"
    return n / (max(r["done"] for r in results) - start)


async def saturation_plain(args: argparse.Namespace, size: int) -> float:
    """A plain aiohttp broadcast: every message sent to every client, in turn."""
    n = args.burst
    clients: list[web.WebSocketResponse] = []
    all_in = anyio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        clients.append(ws)
        if len(clients) == args.subscribers:
            all_in.set()
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        workers = Workers(f"ws://127.0.0.1:{port}/ws", args.subscribers, args.procs, n, raw=True)
        await workers.ready()
        await all_in.wait()
        message = os.urandom(size)
        start = time.time()
        for _ in range(n):
            for ws in clients:
                await ws.send_bytes(message)
        results = await workers.results()
    finally:
        await runner.cleanup()
    assert all(c == n for r in results for c in r["counts"])
    return n / (max(r["done"] for r in results) - start)


# ------------------------------------------------------------------------------------- (c)


def git(*a: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *a], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


COMPOSE = "services:\n  web:\n    image: stackward-test/busybox:1\n    command: [sleep, '1d']\n"


def stack_block(name: str) -> str:
    return (
        f'[[stack]]\nname = "{name}"\ndeploy = true\n[stack.config]\nserver = "p"\n'
        f'linked_repo = "lab"\nrun_directory = "stacks/{name}"\nauto_pull = false\n'
    )


async def webhook_latency(args: argparse.Namespace) -> dict[str, Any]:
    from core.api.state import CORE
    from periphery.agent import Agent
    from periphery.config import load_config as load_periphery
    from protocol.keys import PrivateKey
    from protocol.messages import Checkout, ErrorCode, ErrorInfo
    from protocol.transport import Outcome
    from tests.support.processes import toml_value, write_toml

    arrivals: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        core_key, agent_key = PrivateKey.generate(), PrivateKey.generate()
        for name, key in (("core.key", core_key), ("agent.key", agent_key)):
            (tmp / name).write_bytes(key.openssh_pem())
            (tmp / name).chmod(0o600)  # a private key others may read is refused
        bare, work = tmp / "origin.git", tmp / "work"
        git("init", "-q", "--bare", str(bare), cwd=tmp)
        git("init", "-q", "-b", "main", str(work), cwd=tmp)
        git("config", "user.email", "bench@example.org", cwd=work)
        git("config", "user.name", "bench", cwd=work)
        git("remote", "add", "origin", str(bare), cwd=work)

        # The periphery: a real agent; its deploy handler notes when Checkout arrives and
        # stops the deploy there (the bench is about getting the command to it).
        pcfg = write_toml(
            tmp / "periphery.toml",
            {
                "listen": "127.0.0.1:0",
                "private_key": str(tmp / "agent.key"),
                "core_public_keys": [core_key.public_key.openssh_line()],
                "root_directory": str(tmp / "root"),
            },
        )
        agent = Agent(load_periphery(pcfg))
        real = agent.dispatcher

        class Noting:
            def inline(self, command: Any) -> Outcome | None:
                return real.inline(command)

            async def __call__(self, command: Any, out: Any) -> Outcome:
                if isinstance(command, Checkout):
                    arrivals[command.commit] = time.perf_counter()
                    return Outcome(error=ErrorInfo(ErrorCode.BAD_REQUEST, "bench: stop here"))
                return await real(command, out)

        agent.dispatcher = Noting()  # type: ignore[assignment]

        async with anyio.create_task_group() as tg:
            agent_url = await tg.start(agent.run)
            url = "file://" + str(bare)
            local = (
                f'[[server]]\nname = "p"\n[server.config]\naddress = {toml_value(agent_url)}\n'
                f"public_key = {toml_value(agent_key.public_key.openssh_line())}\n\n"
                f'[[repo]]\nname = "lab"\n[repo.config]\nurl = {toml_value(url)}\n\n'
                f"{stack_block('web')}\n"
                '[[resource_sync]]\nname = "lab"\n[resource_sync.config]\nlinked_repo = "lab"\n'
                'resource_path = ["resources.toml"]\n'
            )
            in_repo = f"{stack_block('app')}\n"
            (work / "stacks" / "web").mkdir(parents=True)
            (work / "stacks" / "app").mkdir(parents=True)
            (work / "stacks" / "web" / "compose.yaml").write_text(COMPOSE)
            (work / "stacks" / "app" / "compose.yaml").write_text(COMPOSE)
            (work / "resources.toml").write_text(in_repo)
            git("add", "-A", cwd=work)
            git("commit", "-qm", "start", cwd=work)
            git("push", "-q", "origin", "main", cwd=work)
            (tmp / "resources.toml").write_text(local)
            config = core_config(
                tmp,
                private_key=str(tmp / "core.key"),
                resources=[str(tmp / "resources.toml")],
                webhook_secret=SECRET,
            )
            port, app = await start_core(tg, config)
            core = app[CORE]
            base = f"http://127.0.0.1:{port}"
            auth = {"Authorization": f"Bearer {TOKEN}"}

            async def settle() -> None:
                with anyio.fail_after(30):
                    while core.reconciler and core.reconciler.busy():  # noqa: ASYNC110
                        await anyio.sleep(0.005)

            async with aiohttp.ClientSession() as session:
                for sync in ("local", "lab"):
                    async with session.post(f"{base}/api/syncs/{sync}/plan", headers=auth) as r:
                        plan = await r.json()
                        assert r.status == 201, plan
                    async with session.post(
                        f"{base}/api/syncs/{sync}/apply", headers=auth, json={"plan_id": plan["id"]}
                    ) as r:
                        assert r.status == 200, await r.text()
                    await anyio.sleep(0.2)
                    await settle()
                assert core.pool is not None
                await core.pool.channel("p", 10)

                async def push(kind: str, name: str, stack: str, n: int) -> float:
                    path = f"stacks/{stack}/compose.yaml"
                    (work / path).write_text(COMPOSE + f"# {n}\n")
                    git("commit", "-qam", f"touch {n}", cwd=work)
                    git("push", "-q", "origin", "main", cwd=work)
                    sha = git("rev-parse", "HEAD", cwd=work)
                    body = json.dumps(
                        {"ref": "refs/heads/main", "after": sha, "commits": [{"modified": [path]}]}
                    ).encode()
                    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                    headers = {
                        "X-GitHub-Event": "push",
                        "X-GitHub-Delivery": secrets.token_hex(8),
                        "X-Hub-Signature-256": sig,
                        "Content-Type": "application/json",
                    }
                    t0 = time.perf_counter()
                    async with session.post(
                        f"{base}/listener/github/{kind}/{name}/deploy", data=body, headers=headers
                    ) as r:
                        assert r.status == 202, await r.text()
                    with anyio.fail_after(30):
                        while sha not in arrivals:  # noqa: ASYNC110 (timed at the agent)
                            await anyio.sleep(0.0005)
                    took = arrivals[sha] - t0
                    await anyio.sleep(0.05)
                    await settle()
                    return took

                stack_times = [await push("stack", "web", "web", i) for i in range(args.pushes)]
                sync_times, fetches = [], []
                bus = app[CORE].events
                for i in range(args.pushes):
                    sync_times.append(await push("sync", "lab", "app", 1000 + i))
                    fetched = [e for e in bus.recent(200) if e.kind == "change.detected"][-1].data()
                    fetches.append(float(fetched["fetch_ms"]) / 1000)
            tg.cancel_scope.cancel()
    beyond = [t - f for t, f in zip(sync_times, fetches, strict=True)]
    return {
        "stack": statistics.median(stack_times) * 1000,
        "sync": statistics.median(sync_times) * 1000,
        "fetch": statistics.median(fetches) * 1000,
        "beyond": statistics.median(beyond) * 1000,
    }


# ------------------------------------------------------------------------------------ main


async def main(args: argparse.Namespace) -> None:
    print(
        f"{args.subscribers} subscribers in {args.procs} processes, loopback, {os.cpu_count()} CPUs"
    )
    if "a" in args.parts:
        p50, p99, share = await latency(args)
        print(
            f"(a) {args.rate} events/s for {args.seconds}s: latency p50 {p50:.1f} ms,"
            f" p99 {p99:.1f} ms (target ≤ 100 ms); delivered {share * 100:.2f}% (target 100%)"
        )
    if "b" in args.parts:
        from core.api.state import CORE  # noqa: F401  (warm imports before timing)
        from core.events.model import Event, Kind

        size = len(
            Event.of(1, time.time(), Kind.DEPLOY_OUTPUT, "stack:media", payload(1)).msgpack()
        )
        ours, plain = [], []
        for _ in range(args.rounds):
            ours.append(await saturation_stackward(args))
            plain.append(await saturation_plain(args, size))
        o, p = statistics.median(ours), statistics.median(plain)
        print(
            f"(b) saturation, {args.burst} events of {size} B to each subscriber: stackward"
            f" {o:,.0f} events/s, plain aiohttp broadcast {p:,.0f} messages/s:"
            f" {o / p:.2f}× (target ≥ 0.6×)"
        )
    if "c" in args.parts:
        c = await webhook_latency(args)
        print(
            f"(c) webhook → Checkout at the periphery, p50 of {args.pushes}:"
            f" stack webhook {c['stack']:.1f} ms (the push names the commit: no git fetch on"
            f" the core)"
        )
        print(f"    sync webhook: git fetch {c['fetch']:.1f} ms (on its own)")
        print(
            f"    sync webhook: {c['sync']:.1f} ms in all, {c['beyond']:.1f} ms beyond the fetch"
            " (target ≤ 20 ms)"
        )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pushes", type=int, default=30)
    parser.add_argument("--parts", default="abc")
    parser.add_argument("--worker", default="")
    parser.add_argument("--conns", type=int, default=0)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--raw", action="store_true")
    args = parser.parse_args()
    if args.worker:
        anyio.run(worker, args.worker, args.conns, args.expect, args.raw)
    else:
        import logging

        logging.basicConfig(level=os.environ.get("BENCH_LOG", "ERROR"))
        anyio.run(main, args)


if __name__ == "__main__":
    cli()
