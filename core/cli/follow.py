"""Following deploy runs from the command line: a line per stack as it moves, then a table.

Polls ``GET /api/runs/{id}`` (and, with output, ``GET /api/deploys/{id}/log``) every
``POLL`` seconds. A failed stack is shown with why: the failing step, the reason, and the last
lines the failing command printed, so the cause is where the user looks.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

import anyio

from core.client import CoreClient

POLL = 0.25


def _mark(status: str, c: dict[str, str]) -> str:
    return {
        "healthy": f"{c['green']}✔{c['reset']}",
        "failed": f"{c['red']}✘{c['reset']}",
        "skipped": f"{c['yellow']}-{c['reset']}",
        "interrupted": f"{c['yellow']}!{c['reset']}",
    }.get(status, " ")


def _seconds(start: float | None, end: float | None) -> str:
    if not start:
        return ""
    took = (end or time.time()) - start
    return f"{took:.2f}s" if took < 10 else f"{took:.1f}s"


class RunFollower:
    def __init__(
        self,
        client: CoreClient,
        out: TextIO,
        colors: dict[str, str],
        *,
        output: bool = False,
        width: int = 16,
    ) -> None:
        self.client = client
        self.out = out
        self.c = colors
        self.output = output
        self.width = width
        self._seen_steps: dict[tuple[int, str], str] = {}
        self._seen_status: dict[int, str] = {}
        self._log_seq: dict[int, int] = {}

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    async def _show_deploy(self, d: dict[str, Any]) -> None:
        c, name = self.c, d["stack"].ljust(self.width)
        for step in d["steps"]:
            key = (d["id"], step["step"])
            state = step["status"]
            if self._seen_steps.get(key) == state:
                continue
            self._seen_steps[key] = state
            if state == "running":
                self._print(f"  {name} {step['step']} …")
            elif state == "ok":
                took = _seconds(step["started_at"], step["finished_at"])
                self._print(f"  {name} {step['step']} {c['dim']}ok {took}{c['reset']}")
        if self.output and d["status"] in ("running", "healthy", "failed"):
            await self._show_output(d)
        status = d["status"]
        if self._seen_status.get(d["id"]) == status or status in ("pending", "running"):
            self._seen_status[d["id"]] = status
            return
        self._seen_status[d["id"]] = status
        if status == "healthy":
            took = _seconds(d["started_at"], d["finished_at"])
            commit = (d.get("commit") or "")[:12]
            self._print(
                f"{_mark(status, c)} {name} {c['green']}healthy{c['reset']} in {took}"
                f" {c['dim']}{commit}{c['reset']}"
            )
        elif status == "failed":
            step = f" at {d['failed_step']}" if d.get("failed_step") else ""
            self._print(
                f"{_mark(status, c)} {name} {c['red']}failed{c['reset']}{step}: {d['reason']}"
            )
            tail = d.get("tail") or ""
            if tail and not self.output:  # with output, the lines were shown as they came
                self._print(f"  {c['dim']}last output:{c['reset']}")
                for line in tail.splitlines():
                    self._print(f"  {c['dim']}|{c['reset']} {line}")
        elif status in ("skipped", "interrupted"):
            self._print(
                f"{_mark(status, c)} {name} {c['yellow']}{status}{c['reset']}: {d['reason']}"
            )

    async def _show_output(self, d: dict[str, Any]) -> None:
        after = self._log_seq.get(d["id"], -1)
        for line in await self.client.log(d["id"], after):
            self._log_seq[d["id"]] = line["seq"]
            for text in line["text"].splitlines():
                self._print(
                    f"  {self.c['dim']}{d['stack']} | {line['step']} |{self.c['reset']} {text}"
                )

    async def follow(self, run_id: int, time_limit: float = 3600) -> dict[str, Any]:
        deadline = time.monotonic() + time_limit
        while True:
            run = await self.client.run(run_id)
            if run["deploys"]:
                self.width = max(self.width, *(len(d["stack"]) for d in run["deploys"]))
            for d in sorted(run["deploys"], key=lambda d: (d["started_at"] or 1e18, d["id"])):
                await self._show_deploy(d)
            if run["status"] != "running" or time.monotonic() > deadline:
                return dict(run)
            await anyio.sleep(POLL)

    async def follow_all(self, run_ids: list[int], time_limit: float = 3600) -> dict[str, Any]:
        """Follow several runs (an apply whose stacks joined deploys already waiting) as one:
        the deploys of all, and ``succeeded`` only when every run did."""
        runs = [await self.follow(r, time_limit) for r in run_ids]
        if len(runs) == 1:
            return runs[0]
        return {
            "id": run_ids[0],
            "status": "succeeded" if all(r["status"] == "succeeded" for r in runs) else "failed",
            "started_at": min(r["started_at"] for r in runs),
            "finished_at": max(r["finished_at"] or 0 for r in runs),
            "deploys": [d for r in runs for d in r["deploys"]],
        }

    def summary(self, run: dict[str, Any]) -> None:
        c = self.c
        deploys = sorted(run["deploys"], key=lambda d: (d["started_at"] or 1e18, d["id"]))
        rows = [
            (
                d["stack"],
                d["status"],
                _seconds(d["started_at"], d["finished_at"]),
                (d.get("commit") or "")[:12],
                d["server"],
                d["reason"],
            )
            for d in deploys
        ]
        head = ("STACK", "RESULT", "TIME", "COMMIT", "SERVER", "REASON")
        widths = [
            max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
            for i, h in enumerate(head[:-1])
        ]
        self._print("")
        self._print(
            c["bold"]
            + "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=False))
            + "  REASON"
            + c["reset"]
        )
        for row in rows:
            self._print(
                "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[-1]
            )
        healthy = sum(d["status"] == "healthy" for d in deploys)
        took = _seconds(run["started_at"], run["finished_at"])
        color = c["green"] if run["status"] == "succeeded" else c["red"]
        self._print(
            f"{color}{run['status']}{c['reset']}: {healthy}/{len(deploys)} healthy in {took}"
        )
