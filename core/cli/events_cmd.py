"""``stackward events``: follow the core's event stream, one readable line per event.

Connects to ``/ws/events`` with the API token. When the stream breaks or the core reports that
this client fell behind (``lagged``), it reconnects with ``since`` = the last event it printed,
so nothing is missed and nothing is printed twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

CONNECT_TIMEOUT = 10.0
RECONNECT_DELAY = 1.0
MAX_RECONNECTS = 30  # in a row, without an event in between


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "events",
        help="follow the core's event stream",
        description="Print the core's events as they happen (deploys and their output, drift,"
        " health, webhooks, Docker events, peripheries). Reconnects and resumes by itself.",
    )
    p.add_argument("--since", type=int, default=None, help="replay from after this event id")
    p.add_argument(
        "--kind", action="append", default=[], help="only these kinds (deploy, drift, ...)"
    )
    p.add_argument("--stack", action="append", default=[], help="only events of this stack")
    p.add_argument("--json", action="store_true", help="one JSON object a line, as received")
    p.add_argument("--count", type=int, default=0, help="exit after this many events")
    p.add_argument("--url", default=None, help="the core's URL (default $STACKWARD_URL)")
    p.add_argument("--token", default=None, help="API token (default $STACKWARD_TOKEN)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(handler=run, default_log_level="WARNING")


class _Fatal(Exception):
    def __init__(self, message: str, code: int = 255) -> None:
        super().__init__(message)
        self.code = code


def run(args: argparse.Namespace) -> int:
    import anyio

    try:
        return anyio.run(_follow, args)
    except KeyboardInterrupt:
        return 0
    except _Fatal as exc:
        print(f"stackward events: {exc}", file=sys.stderr)
        return exc.code


async def _follow(args: argparse.Namespace) -> int:
    import aiohttp
    import anyio

    from core.cli.common import DEFAULT_URL
    from core.cli.common import colors as _colors
    from core.cli.event_lines import render

    c = _colors(args)
    base = (args.url or os.environ.get("STACKWARD_URL") or DEFAULT_URL).rstrip("/")
    token = args.token or os.environ.get("STACKWARD_TOKEN") or ""
    ws_url = base.replace("https://", "wss://").replace("http://", "ws://") + "/ws/events"
    last: int | None = args.since
    printed = 0
    failures = 0
    timeout = aiohttp.ClientWSTimeout(ws_close=5.0)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT)
    ) as session:
        while True:
            params: list[tuple[str, str]] = [("kind", k) for k in args.kind]
            params += [("stack", s) for s in args.stack]
            if last is not None:
                params.append(("since", str(last)))
            try:
                async with session.ws_connect(
                    ws_url,
                    params=params,
                    headers={"Authorization": f"Bearer {token}"},
                    heartbeat=30.0,
                    timeout=timeout,
                ) as ws:
                    async for msg in ws:
                        if msg.type is not aiohttp.WSMsgType.TEXT:
                            continue
                        event: dict[str, Any] = json.loads(msg.data)
                        if args.json:
                            if "id" in event:
                                print(msg.data, flush=True)
                        else:
                            for line in render(event, c):
                                print(line, flush=True)
                        if "id" in event:
                            last, failures = int(event["id"]), 0
                            printed += 1
                            if args.count and printed >= args.count:
                                return 0
                        elif event.get("control") == "live" and last is None:
                            last = int(event["last"])
                        elif event.get("control") == "lagged":
                            break  # reconnect with since=last: the core replays what we missed
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status in (401, 403):
                    raise _Fatal(
                        f"refused ({exc.status}): check the token ($STACKWARD_TOKEN)"
                    ) from exc
                if exc.status == 400:
                    raise _Fatal(f"bad request: {exc.message}", 2) from exc
                failures += 1
                reason = f"HTTP {exc.status}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                failures += 1
                reason = str(exc) or type(exc).__name__
            else:
                reason = "the stream ended"
            if failures >= MAX_RECONNECTS:
                raise _Fatal(f"cannot reach the core at {base}: {reason}")
            if failures:
                print(f"{c['yellow']}-- {reason}; reconnecting{c['reset']}", file=sys.stderr)
            await anyio.sleep(RECONNECT_DELAY if failures else 0)
