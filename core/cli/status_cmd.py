"""``stackward status [STACK]``: the stacks and their last deploys, or one stack as it runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "status",
        help="show the stacks, or one stack as it runs",
        description="Without STACK: every applied stack and its last deploy. With STACK: its"
        " services as they run now (exit 0 when healthy, 1 when not).",
    )
    p.add_argument("stack", nargs="?")
    p.add_argument("--url", default=None, help="the core's URL (default $STACKWARD_URL)")
    p.add_argument("--token", default=None, help="API token (default $STACKWARD_TOKEN)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(handler=run, default_log_level="WARNING")


def run(args: argparse.Namespace) -> int:
    from core.cli.plan_cmd import _call, _colors, _Failure

    c = _colors(args)
    try:
        body: Any = _status_body(args) if args.stack else _call(args, "GET", "/api/stacks")
    except _Failure as exc:
        print(f"stackward status: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"stackward status: cannot reach the core: {exc}", file=sys.stderr)
        return 255
    if isinstance(body.get("error"), dict):
        error = body["error"]
        print(f"stackward status: {error.get('code')}: {error.get('message')}", file=sys.stderr)
        return 255 if error.get("code") == "unauthorized" else 1
    if args.json:
        print(json.dumps(body, indent=2))
        return 0 if not args.stack or body.get("healthy") else 1
    if not args.stack:
        for stack in body["stacks"]:
            last = stack["last_deploy"] or {}
            status = last.get("status", "never deployed")
            color = {"healthy": c["green"], "failed": c["red"]}.get(status, c["yellow"])
            commit = (last.get("commit") or "")[:12]
            print(
                f"{stack['name']:<24} {stack['mode']:<8} {color}{status:<15}{c['reset']}"
                f" {commit} {last.get('reason', '')}"
            )
        return 0
    healthy = bool(body.get("healthy"))
    mark = f"{c['green']}healthy{c['reset']}" if healthy else f"{c['red']}not healthy{c['reset']}"
    print(f"{body['stack']}: {mark}" + (f" ({body['error']})" if body.get("error") else ""))
    for service in body.get("services", []):
        print(f"  {service['service']:<32} {service['state']:<8} {service['detail']}")
    return 0 if healthy else 1


def _status_body(args: argparse.Namespace) -> Any:
    """GET a stack's status, accepting 503 (not healthy) as an answer."""
    import os
    import urllib.error
    import urllib.request

    from core.cli.plan_cmd import DEFAULT_URL

    url = (args.url or os.environ.get("STACKWARD_URL") or DEFAULT_URL).rstrip("/")
    token = args.token or os.environ.get("STACKWARD_TOKEN") or ""
    request = urllib.request.Request(
        f"{url}/api/stacks/{args.stack}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
