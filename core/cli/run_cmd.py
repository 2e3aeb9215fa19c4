"""``stackward run PROCEDURE [--follow]``: run a procedure on the core, as Komodo's
``RunProcedure``; with ``--follow``, its stages, executions and output as they come, then how it
ended (exit 0 only when it succeeded)."""

from __future__ import annotations

import argparse
import json

import anyio

from core.cli.common import add_connection, colors, run_with_client
from core.client import CoreClient

POLL = 0.25
PAGE = 10_000  # output lines the core answers at most at once


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a procedure",
        description="Run a procedure ([[procedure]] in the applied resources): its stages in"
        " order, the executions of a stage at once. One run of a procedure at a time: while it"
        " runs, another is refused (exit 1).",
    )
    p.add_argument("procedure")
    add_connection(p)
    p.add_argument("--follow", action="store_true", help="show its output until it ends")
    p.add_argument("--json", action="store_true", help="print the run as JSON when it ends")
    p.set_defaults(handler=run, default_log_level="WARNING")


def run(args: argparse.Namespace) -> int:
    c = colors(args)

    async def body(client: CoreClient) -> int:
        run_id = await client.run_procedure(args.procedure)
        if not args.follow:
            if args.json:
                print(json.dumps({"run": run_id, "procedure": args.procedure}))
            else:
                print(
                    f"Running procedure {args.procedure}: run {run_id} (follow with stackward"
                    f" run --follow, or GET /api/procedure-runs/{run_id})"
                )
            return 0
        seen = -1
        while True:
            done = await client.procedure_run(run_id, seen)
            for line in done["output"]:
                seen = max(seen, line["seq"])
                if not args.json:
                    print(_paint(line["text"], c), flush=True)
            if done["status"] != "running" and len(done["output"]) < PAGE:
                break
            if done["status"] == "running":
                await anyio.sleep(POLL)
        if args.json:
            print(json.dumps(done, indent=2))
        else:
            status = done["status"]
            color = c["green"] if status == "succeeded" else c["red"]
            took = (done["finished_at"] or 0) - done["started_at"]
            why = f": {done['message']}" if done.get("message") else ""
            print(
                f"{color}{status}{c['reset']}: procedure {args.procedure} (run {run_id}) in"
                f" {took:.1f}s{why}"
            )
        return 0 if done["status"] == "succeeded" else 1

    return run_with_client(args, "run", body)


def _paint(text: str, c: dict[str, str]) -> str:
    if text.startswith("ERROR"):
        return f"{c['red']}{text}{c['reset']}"
    if text.startswith("WARNING"):
        return f"{c['yellow']}{text}{c['reset']}"
    if text.startswith(("Finished", "Executing stage")):
        return f"{c['bold']}{text}{c['reset']}"
    return text
