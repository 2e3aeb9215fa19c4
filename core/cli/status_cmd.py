"""``stackward status [STACK]``: every stack's desired, recorded and running state side by side,
or one stack with its services as they run now.

Without STACK: a line per stack: its tier, the commit it should run (DESIRED), its last deploy's
result and commit (RECORDED), what the engine reported last (RUNNING), its images after the last
update check (IMAGES: ``current``, ``update: SERVICE…``, ``check failed``, ``-`` before any), and,
when it is not converged, why (exit 0). With STACK: the same, then its services now (exit 0 when
healthy, 1 when not), each service's image and whether a newer one is in its registry, and for a
failed deploy the step, the reason and the last output lines.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.cli.common import add_connection, colors, run_with_client
from core.client import CoreClient


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "status",
        help="show the stacks: desired, recorded, running",
        description="Without STACK: every applied stack, what it should run, its last deploy,"
        " what the engine runs, and why it is not converged. With STACK: its services as they"
        " run now (exit 0 when healthy, 1 when not).",
    )
    p.add_argument("stack", nargs="?")
    add_connection(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run, default_log_level="WARNING")


def _short(commit: str | None) -> str:
    return (commit or "")[:12] or "-"


def _images(images: dict[str, Any] | None) -> str:
    """The IMAGES column: the last image update check in a word or two."""
    if not images:
        return "-"
    newer = [s["service"] for s in images.get("services", []) if s.get("update_available")]
    if newer:
        return "update: " + ",".join(newer)
    if images.get("error") or any(s.get("error") for s in images.get("services", [])):
        return "check failed"
    return "current"


def _rows(stacks: list[dict[str, Any]], c: dict[str, str]) -> list[str]:
    head = ("STACK", "TIER", "DESIRED", "RECORDED", "RUNNING", "IMAGES", "")
    rows = []
    for s in stacks:
        last = s.get("recorded") or {}
        status = last.get("status") or "never deployed"
        recorded = f"{status} {_short(last.get('commit'))}" if last else status
        engine = (s.get("engine") or {}).get("state", "unknown")
        why = "converged" if s.get("converged") else "; ".join(s.get("reasons") or [])
        rows.append(
            (
                s["name"],
                s.get("tier") or "-",
                _short(s["desired"]["commit"]),
                recorded,
                engine,
                _images(s.get("images")),
                why,
            )
        )
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head[:-1])]

    def line(row: tuple[str, ...], converged: bool | None = None) -> str:
        cells = [v.ljust(w) for v, w in zip(row[:-1], widths, strict=True)]
        last = row[-1]
        if converged is not None:
            last = f"{c['green'] if converged else c['yellow']}{last}{c['reset']}"
        return "  ".join(cells) + "  " + last

    out = [c["bold"] + line(head) + c["reset"]]
    for s, row in zip(stacks, rows, strict=True):
        out.append(line(row, bool(s.get("converged"))))
    return out


def run(args: argparse.Namespace) -> int:
    c = colors(args)

    async def body(client: CoreClient) -> int:
        if not args.stack:
            stacks = await client.stacks()
            if args.json:
                print(json.dumps({"stacks": stacks}, indent=2))
                return 0
            for text in _rows(stacks, c):
                print(text)
            return 0
        one = await client.stack(args.stack)
        if args.json:
            print(json.dumps(one, indent=2))
            return 0 if one.get("healthy") else 1
        healthy = bool(one.get("healthy"))
        mark = (
            f"{c['green']}healthy{c['reset']}" if healthy else f"{c['red']}not healthy{c['reset']}"
        )
        print(f"{one['stack']}: {mark}" + (f" ({one['error']})" if one.get("error") else ""))
        if "desired" in one:
            last = one.get("recorded") or {}
            print(f"  desired:  {_short(one['desired']['commit'])}")
            print(
                f"  recorded: {last.get('status', 'never deployed')} {_short(last.get('commit'))}"
            )
            engine = one.get("engine") or {}
            print(f"  running:  {engine.get('state', 'unknown')} {engine.get('detail', '')}")
            if not one.get("converged"):
                for reason in one.get("reasons") or []:
                    print(f"  {c['yellow']}not converged: {reason}{c['reset']}")
            if last.get("status") == "failed" and last.get("tail"):
                print(f"  last output ({last.get('failed_step') or 'failed step'}):")
                for text in str(last["tail"]).splitlines():
                    print(f"    | {text}")
        for service in one.get("services", []):
            print(f"  {service['service']:<32} {service['state']:<8} {service['detail']}")
        images = one.get("images") or {}
        if images.get("error"):
            print(f"  images: {c['yellow']}not checked: {images['error']}{c['reset']}")
        for image in images.get("services", []):
            if image.get("update_available"):
                state = f"{c['yellow']}newer image {image['latest'][7:19]}{c['reset']}"
            elif image.get("error") or image.get("skipped"):
                state = image.get("error") or f"skipped: {image['skipped']}"
            else:
                state = "current"
            print(f"  image {image['service']:<26} {image['image']}  {state}")
        return 0 if healthy else 1

    return run_with_client(args, "status", body)
