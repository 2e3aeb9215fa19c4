"""``stackward deploy STACK [--follow]``: deploy one stack, and nothing else."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "deploy", help="deploy one stack", description="Deploy one stack and nothing else."
    )
    p.add_argument("stack")
    p.add_argument("--url", default=None, help="the core's URL (default $STACKWARD_URL)")
    p.add_argument("--token", default=None, help="API token (default $STACKWARD_TOKEN)")
    p.add_argument("--follow", action="store_true", help="show the steps and output until done")
    p.add_argument("--json", action="store_true", help="print the run as JSON")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(handler=run, default_log_level="WARNING")


def run(args: argparse.Namespace) -> int:
    from core.cli.follow import RunFollower
    from core.cli.plan_cmd import _call, _colors, _Failure

    def call(method: str, path: str) -> Any:
        return _call(args, method, path)

    try:
        started = call("POST", f"/api/stacks/{args.stack}/deploy")
        if not args.follow:
            if args.json:
                print(json.dumps(started, indent=2))
            else:
                print(
                    f"Deploying {args.stack}: run {started['id']}"
                    f" (follow with stackward deploy --follow, or GET /api/runs/{started['id']})"
                )
            return 0
        follower = RunFollower(call, sys.stdout, _colors(args), output=True)
        done = follower.follow(started["id"])
    except _Failure as exc:
        print(f"stackward deploy: {exc}", file=sys.stderr)
        return exc.code
    if args.json:
        print(json.dumps(done, indent=2))
    else:
        follower.summary(done)
    return 0 if done["status"] == "succeeded" else 1
