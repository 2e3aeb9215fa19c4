"""Dashboard benchmark: a real core with 100 stacks and a real agent whose deploy streams 1,000
output lines a second, the dashboard open on that stack's page in Debian's chromium.

- **Latency**: from an event's publication (its ``time``, set by the core as it publishes) to
  its row on the page (a MutationObserver in the page sees the line's element added), p50 and
  p99 over every line, against the same events reaching a plain ``/ws/events`` client (aiohttp,
  JSON, in this process) in the same run. Target: p99 ≤ 250 ms.
- **Memory**: the page's JS heap (after a forced GC) and its DOM nodes every 30 s while it
  streams: they must stay flat (the page keeps at most 2,000 output lines).

Run: ``python bench/dashboard.py`` (60 s of streaming); ``--minutes 10`` for the full soak.
Needs Debian's ``chromium`` and ``playwright`` (the test extras); no Docker engine (the deploy
streams from its pre_deploy and then fails, before Compose). It also prints how busy the page's
main thread was (script, layout, style; the rest is mostly painting); ``--probe`` times the
page's websocket messages as they arrive, ``--diag-css CSS`` tries a change of style (the page
then runs without its CSP).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import anyio  # noqa: E402
import anyio.to_thread  # noqa: E402

from tests.support.processes import CoreProcess, Periphery, make_key, toml_value  # noqa: E402

BUCKETS = 10_001  # 1 ms buckets up to 10 s (the last one: 10 s or more)
STREAMER = r'''
import sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
start = time.monotonic()
n = 0
pad = "x" * 40
while True:
    elapsed = time.monotonic() - start
    if elapsed >= seconds:
        break
    due = int(elapsed * rate)
    lines = []
    while n < due:
        lines.append(f"\x1b[32mline {n}\x1b[0m {pad}\n")
        n += 1
    if lines:
        sys.stdout.write("".join(lines))
        sys.stdout.flush()
    time.sleep(0.01)
print(f"streamed {n} lines", flush=True)
sys.exit(1)
'''
OBSERVE = """() => {
  const hist = new Uint32Array(BUCKETS);
  let rows = 0;
  const log = document.querySelector('.log');
  new MutationObserver((records) => {
    const now = (performance.timeOrigin + performance.now()) / 1000;
    for (const r of records) for (const n of r.addedNodes) {
      if (n.nodeType !== 1 || !n.dataset.t) continue;
      const ms = Math.round((now - Number(n.dataset.t)) * 1000);
      hist[Math.max(0, Math.min(hist.length - 1, ms))] += 1;
      rows += 1;
    }
  }).observe(log, { childList: true });
  window.__bench = { hist, rows: () => rows };
}""".replace("BUCKETS", str(BUCKETS))


PROBE = """
window.__probe = { arrive: new Uint32Array(BUCKETS), long: 0, longMs: 0 };
const Original = window.WebSocket;
window.WebSocket = function (...a) {
  const ws = new Original(...a);
  ws.addEventListener('message', (m) => {
    const now = (performance.timeOrigin + performance.now()) / 1000;
    const e = JSON.parse(m.data);
    if (e.kind !== 'deploy.output') return;
    const ms = Math.round((now - e.time) * 1000);
    window.__probe.arrive[Math.max(0, Math.min(BUCKETS - 1, ms))] += 1;
  });
  return ws;
};
window.WebSocket.prototype = Original.prototype;
new PerformanceObserver((list) => {
  for (const t of list.getEntries()) {
    window.__probe.long += 1;
    window.__probe.longMs += t.duration;
  }
}).observe({ type: 'longtask', buffered: true });
""".replace("BUCKETS", str(BUCKETS))


def percentile(hist: list[int], q: float) -> float:
    total = sum(hist)
    if not total:
        return float("nan")
    want = q * total
    seen = 0
    for ms, count in enumerate(hist):
        seen += count
        if seen >= want:
            return float(ms)
    return float(len(hist) - 1)


def resources(stacks: int, agent_key: str, streamer: Path, rate: int, seconds: float) -> str:
    out = [
        'tiers = ["infrastructure", "platform", "application"]',
        '[[server]]\nname = "manager"\n[server.config]\npublic_key = ' + toml_value(agent_key),
    ]
    tiers = ["infrastructure", "platform", "application"]
    for n in range(stacks - 1):
        out.append(
            f'[[stack]]\nname = "bench-{n:03}"\ndeploy = false\ntier = "{tiers[n % 3]}"\n'
            '[stack.config]\nserver = "manager"\nfile_contents = "services: {}"'
        )
    command = f"python3 {streamer} {rate} {seconds}"
    out.append(
        '[[stack]]\nname = "bench-stream"\ndeploy = false\ntier = "application"\n'
        '[stack.config]\nserver = "manager"\nfile_contents = "services: {}"\n'
        f"pre_deploy = {{ command = {toml_value(command)} }}"
    )
    return "\n\n".join(out) + "\n"


async def baseline(url: str, token: str, hist: list[int], ready: anyio.Event) -> None:
    """A plain /ws/events client: the same events, the same clock, per line."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            url.replace("http", "ws") + "/ws/events?kind=deploy&stack=bench-stream",
            headers={"Authorization": f"Bearer {token}"},
            max_msg_size=0,
        ) as ws:
            async for msg in ws:
                now = time.time()
                event = json.loads(msg.data)
                if event.get("control") == "live":
                    ready.set()
                    continue
                if event.get("kind") == "deploy.output":
                    ms = round((now - event["time"]) * 1000)
                    lines = max(1, event["data"]["text"].count("\n"))
                    hist[max(0, min(BUCKETS - 1, ms))] += lines
                elif event.get("kind") == "deploy.finished":
                    return


async def metrics(cdp: Any) -> dict[str, float]:
    answer = await cdp.send("Performance.getMetrics")
    return {m["name"]: float(m["value"]) for m in answer["metrics"]}


async def memory(cdp: Any) -> tuple[float, int]:
    await cdp.send("HeapProfiler.collectGarbage")
    found = await metrics(cdp)
    return found["JSHeapUsedSize"] / 2**20, int(found["Nodes"])


async def main(args: argparse.Namespace) -> int:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed: apt-get install chromium", file=sys.stderr)
        return 2
    seconds = args.minutes * 60 if args.minutes else args.seconds
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    streamer = tmp / "stream.py"
    streamer.write_text(STREAMER)
    keys = make_key(tmp / "core.key")
    token = secrets.token_hex(16)
    core = CoreProcess(
        tmp / "core",
        keys,
        token,
        reconcile="manual",
        pre_deploy_timeout=seconds + 120,
        event_queue=65536,
    )
    core.start_and_wait()
    agent = Periphery(
        tmp / "agent",
        keys,
        listen="",
        core_address=f"ws://127.0.0.1:{core.port}",
        server_name="manager",
        reconnect_initial_delay=0.1,
    )
    try:
        agent.start_and_wait()
        core.resources.write_text(
            resources(args.stacks, agent.keys.public.openssh_line(), streamer, args.rate, seconds)
        )
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(core.url + "/api/syncs/local/plan") as r:
                plan = await r.json()
            async with http.post(
                core.url + "/api/syncs/local/apply", json={"plan_id": plan["id"]}
            ) as r:
                assert r.status == 200, await r.text()
            async with http.get(core.url + "/api/stacks") as r:
                count = len((await r.json())["stacks"])
        print(f"core with {count} stacks, an agent; {args.rate} lines/s for {seconds:g} s")

        page_hist: list[int]
        base_hist = [0] * BUCKETS
        samples: list[tuple[float, float, int]] = []
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--headless", "--disable-gpu",
                      "--disable-background-networking", "--disable-component-update",
                      "--disable-sync", "--no-first-run"],
            )
            context = await browser.new_context(
                viewport={"width": 1280, "height": 900}, bypass_csp=bool(args.diag_css)
            )
            page = await context.new_page()
            if args.probe:
                await page.add_init_script(PROBE)
            await page.goto(core.url + "/")
            await page.locator("#token").fill(token)
            await page.keyboard.press("Enter")
            await page.locator("#conn.live").wait_for()
            await page.goto(core.url + "/#/stack/bench-stream")
            await page.locator(".log").wait_for()
            await page.locator("h1 button.deploy").wait_for()
            await page.evaluate(OBSERVE)
            if args.diag_css:
                await page.add_style_tag(content=args.diag_css)
            cdp = await page.context.new_cdp_session(page)
            await cdp.send("Performance.enable")
            ready = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(baseline, core.url, token, base_hist, ready)
                await ready.wait()
                started = time.monotonic()
                before = await metrics(cdp)
                await page.locator("h1 button.deploy").click()
                await page.locator(".deploy-head .badge.s-running").wait_for()
                next_sample = started + 5
                while True:
                    await anyio.sleep(0.5)
                    if time.monotonic() >= next_sample:
                        heap, nodes = await memory(cdp)
                        samples.append((time.monotonic() - started, heap, nodes))
                        print(f"  t={samples[-1][0]:5.0f} s  heap {heap:6.2f} MiB  "
                              f"DOM nodes {nodes}", flush=True)
                        next_sample += 30
                    finished = await page.locator(".deploy-head .badge.s-failed").count()
                    if finished:
                        break
                    if time.monotonic() - started > seconds + 120:
                        raise TimeoutError("the deploy did not end")
            after = await metrics(cdp)
            wall = time.monotonic() - started
            busy = {
                k: (after[k] - before[k]) / wall
                for k in ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")
            }
            heap, nodes = await memory(cdp)
            samples.append((time.monotonic() - started, heap, nodes))
            page_hist = list(await page.evaluate("() => Array.from(window.__bench.hist)"))
            rows = await page.evaluate("() => window.__bench.rows()")
            kept = await page.locator(".log .line").count()
            if args.probe:
                probe = await page.evaluate(
                    "() => [Array.from(window.__probe.arrive), window.__probe.long,"
                    " window.__probe.longMs]"
                )
                arrive = list(probe[0])
                print(f"probe: websocket message in the page p50 {percentile(arrive, .5)} ms,"
                      f" p99 {percentile(arrive, .99)} ms; long tasks {probe[1]}"
                      f" ({probe[2]:.0f} ms)")
            await browser.close()
    finally:
        agent.stop()
        core.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    p50, p99 = percentile(page_hist, 0.50), percentile(page_hist, 0.99)
    b50, b99 = percentile(base_hist, 0.50), percentile(base_hist, 0.99)
    print(f"lines: {sum(base_hist)} to the plain client, {rows} rows on the page "
          f"({kept} kept on the page at the end)")
    print(f"publication -> row on the page:     p50 {p50:6.1f} ms   p99 {p99:6.1f} ms"
          f"   (target p99 <= 250 ms)")
    print(f"publication -> plain /ws/events:    p50 {b50:6.1f} ms   p99 {b99:6.1f} ms"
          f"   (baseline, same run)")
    print(f"page beyond the plain client:       p50 {p50 - b50:+6.1f} ms"
          f"   p99 {p99 - b99:+6.1f} ms")
    print("page main thread busy: " + ", ".join(
        f"{k.removesuffix('Duration').lower()} {v:.0%}" for k, v in busy.items()
    ) + " of the wall time")
    if len(samples) >= 3:
        first = samples[1]  # after the first 30 s of streaming (the log is full by then)
        last = samples[-2] if samples[-1][0] - samples[-2][0] < 5 else samples[-1]
        print(f"page memory: heap {first[1]:.2f} MiB at {first[0]:.0f} s -> {last[1]:.2f} MiB "
              f"at {last[0]:.0f} s ({last[1] / first[1]:.2f}x); DOM nodes {first[2]} -> {last[2]}"
              f"; max heap {max(s[1] for s in samples):.2f} MiB")
    ok = p99 <= 250 and rows >= sum(base_hist) * 0.99
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="streaming time")
    parser.add_argument("--minutes", type=float, default=0.0, help="streaming time (soak)")
    parser.add_argument("--rate", type=int, default=1000, help="lines a second")
    parser.add_argument("--stacks", type=int, default=100)
    parser.add_argument("--probe", action="store_true", help="also time the page's websocket")
    parser.add_argument("--diag-css", default="", help="CSS added to the page (diagnosis)")
    sys.exit(anyio.run(main, parser.parse_args()))
