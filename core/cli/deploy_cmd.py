"""``stackward deploy STACK [--follow]``: deploy one stack, and nothing else."""

from __future__ import annotations

import argparse
import json
import sys

from core.cli.common import add_connection, colors, run_with_client
from core.client import CoreClient


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "deploy",
        help="deploy one stack",
        description="Deploy one stack and nothing else. While it is being deployed, the request"
        " joins the deploy waiting for it (--exclusive: this exact run or nothing).",
    )
    p.add_argument("stack")
    add_connection(p)
    p.add_argument("--follow", action="store_true", help="show the steps and output until done")
    p.add_argument("--exclusive", action="store_true", help="refuse when it is busy (exit 1)")
    p.add_argument("--json", action="store_true", help="print the run as JSON")
    p.set_defaults(handler=run, default_log_level="WARNING")


def run(args: argparse.Namespace) -> int:
    from core.cli.follow import RunFollower

    async def body(client: CoreClient) -> int:
        started = await client.deploy(args.stack, exclusive=args.exclusive)
        if not args.follow:
            if args.json:
                print(json.dumps(started, indent=2))
            else:
                how = "joins run" if started.get("joined") else "run"
                print(
                    f"Deploying {args.stack}: {how} {started['id']}"
                    f" (follow with stackward deploy --follow, or GET /api/runs/{started['id']})"
                )
            return 0
        follower = RunFollower(client, sys.stdout, colors(args), output=True)
        done = await follower.follow(started["id"])
        if args.json:
            print(json.dumps(done, indent=2))
        else:
            follower.summary(done)
        return 0 if done["status"] == "succeeded" else 1

    return run_with_client(args, "deploy", body)
