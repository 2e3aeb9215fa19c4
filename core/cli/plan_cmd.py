"""``stackward plan [SYNC]`` and ``stackward apply [SYNC] [--plan ID]`` against a running core.

The core's URL and token come from ``--url`` / ``--token`` or ``STACKWARD_URL`` /
``STACKWARD_TOKEN``. The plan prints grouped by resource type with a colored diff (color when
stdout is a terminal, never with ``NO_COLOR``), counts, and the stacks to deploy with reasons.

Exit codes: 0 done (or nothing to do), 1 the core refused (invalid files, stale plan...), 2 usage,
255 the core cannot be reached or the token is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio.to_thread

from core.cli.common import Failure, add_connection, colors, run_with_client
from core.client import CoreClient


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_text in (
        ("plan", "show what a sync would change"),
        ("apply", "apply a plan of a sync"),
    ):
        p = subparsers.add_parser(name, help=help_text, description=help_text + ".")
        p.add_argument("sync", nargs="?", default="local", help='the sync (default "local")')
        add_connection(p)
        p.add_argument("--json", action="store_true", help="print the plan as JSON")
        if name == "apply":
            p.add_argument(
                "--plan",
                dest="plan_id",
                metavar="ID",
                help="the plan to apply (from stackward plan); without it a new"
                " plan is made, printed, and applied when --yes is given",
            )
            p.add_argument("--yes", action="store_true", help="apply a fresh plan without asking")
            p.add_argument(
                "--follow", action="store_true", help="follow the deploys the apply starts"
            )
        p.set_defaults(
            handler=run_plan if name == "plan" else run_apply, default_log_level="WARNING"
        )


def _value(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def format_plan(plan: dict[str, Any], c: dict[str, str]) -> str:
    sign = {"create": ("+", c["green"]), "update": ("~", c["yellow"]), "delete": ("-", c["red"])}
    out = [
        f'{c["bold"]}Plan {plan["id"]}{c["reset"]} for sync "{plan["sync"]}"'
        f" (state revision {plan['base_revision']})",
        "",
    ]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for ch in plan["changes"]:
        by_kind.setdefault(ch["kind"], []).append(ch)
    for kind, changes in by_kind.items():
        out.append(f"{c['bold']}{kind}{c['reset']}")
        for ch in changes:
            mark, color = sign[ch["action"]]
            out.append(f"  {color}{mark} {ch['name']}{c['reset']}  ({ch['action']})")
            if ch["action"] != "update":
                continue
            for f in ch["fields"]:
                old, new = f["old"], f["new"]
                if isinstance(old, str) and isinstance(new, str) and ("\n" in old or "\n" in new):
                    out.append(f"      {f['path']}:")
                    old_lines, new_lines = old.splitlines(), new.splitlines()
                    for line in old_lines:
                        if line not in new_lines:
                            out.append(f"        {c['red']}- {line}{c['reset']}")
                    for line in new_lines:
                        if line not in old_lines:
                            out.append(f"        {c['green']}+ {line}{c['reset']}")
                else:
                    out.append(
                        f"      {f['path']}: {c['red']}{_value(old)}{c['reset']} -> "
                        f"{c['green']}{_value(new)}{c['reset']}"
                    )
        out.append("")
    if not plan["changes"]:
        out += ["No resource changes.", ""]
    if plan["deploys"]:
        out.append(f"{c['bold']}Stacks to deploy{c['reset']} (in order):")
        wave_of = {n: i for i, w in enumerate(plan.get("deploy_waves", []), 1) for n in w}
        for d in plan["deploys"]:
            out.append(
                f"  [{wave_of.get(d['stack'], '?')}] {d['stack']}: " + "; ".join(d["reasons"])
            )
        out.append("")
    for note in plan.get("notes", []):
        out.append(f"{c['dim']}note: {note}{c['reset']}")
    if plan.get("notes"):
        out.append("")
    n = plan["counts"]
    out.append(
        f"{n['create']} to create, {n['update']} to update, {n['delete']} to delete,"
        f" {n['deploy']} to deploy."
    )
    return "\n".join(out)


def _show(args: argparse.Namespace, plan: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(plan, indent=2))
    else:
        print(format_plan(plan, colors(args)))


def run_plan(args: argparse.Namespace) -> int:
    async def body(client: CoreClient) -> int:
        plan = await client.plan(args.sync)
        _show(args, plan)
        if not args.json and (plan["changes"] or plan["deploys"]):
            print(f"\nApply it with: stackward apply {args.sync} --plan {plan['id']}")
        return 0

    return run_with_client(args, "plan", body)


def run_apply(args: argparse.Namespace) -> int:
    async def body(client: CoreClient) -> int:
        plan_id = args.plan_id
        if not plan_id:
            plan = await client.plan(args.sync)
            if not args.json:
                _show(args, plan)
            if not plan["changes"] and not plan["deploys"]:
                if not args.json:
                    print("Nothing to apply: every stack is converged.")
                return 0
            if not args.yes:
                if not sys.stdin.isatty():
                    raise Failure(2, "pass --yes (or --plan ID) to apply without a prompt")
                answer = await anyio.to_thread.run_sync(input, "Apply this plan? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    print("Not applied.")
                    return 1
            plan_id = plan["id"]
        result = await client.apply(args.sync, plan_id)
        runs = sorted(set((result.get("runs") or {}).values()))
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            n = result["plan"]["counts"]
            print(
                f"Applied plan {plan_id}: {n['create']} created, {n['update']} updated,"
                f" {n['delete']} deleted; state revision {result['revision']}."
            )
            if result["plan"]["deploys"]:
                names = ", ".join(d["stack"] for d in result["plan"]["deploys"])
                print(f"Stacks to deploy: {names}")
            if result.get("deploy_error"):
                raise Failure(1, f"deploys not started: {result['deploy_error']}")
            if result.get("note"):
                print(f"Note: {result['note']}")
            if runs:
                print(f"Deploy run{'s' if len(runs) > 1 else ''} {', '.join(map(str, runs))}.")
        if runs and args.follow:
            from core.cli.follow import RunFollower

            follower = RunFollower(client, sys.stdout, colors(args))
            done = await follower.follow_all(runs)
            follower.summary(done)
            return 0 if done["status"] == "succeeded" else 1
        return 0

    return run_with_client(args, "apply", body)
