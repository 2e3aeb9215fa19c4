"""``stackward bootstrap --config FILE``: the first deployment on a manager, step by step.

Prints each step as it starts and how it ended (``done`` or ``unchanged``, with what it found
or did, and its time); exits 0 when every step passed (a run on a healthy system says that
nothing changed), 1 when a step failed (its name, the reason, and how to resume), 2 for a bad
config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.bootstrap.steps import StepResult


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "bootstrap",
        help="the first deployment on a manager: swarm, secrets, infrastructure, the core",
        description=(
            "Bootstrap a manager when no core runs yet: start its periphery, make the swarm and"
            " its secrets, deploy the infrastructure stacks in order, start the core and run"
            " its first sync. Running it again changes only what is missing."
        ),
    )
    p.add_argument("--config", type=Path, required=True, help="the bootstrap's TOML file")
    p.set_defaults(handler=run, default_log_level="ERROR")


class _Printer:
    def __init__(self) -> None:
        self.color = sys.stdout.isatty()

    def _c(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def started(self, step: str) -> None:
        print(f"{self._c('1', '→')} {step} …", flush=True)

    def detail(self, step: str, text: str) -> None:
        print(f"    {self._c('2', '·')} {text}", flush=True)

    def finished(self, result: StepResult) -> None:
        mark = self._c("32", "✓") if result.status == "done" else self._c("2", "=")
        print(
            f"  {mark} {result.step}: {result.status} — {result.detail}"
            f" {self._c('2', f'({result.seconds:.1f}s)')}",
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    import anyio

    from core.bootstrap.config import load_bootstrap_config
    from core.bootstrap.steps import RESUME, Bootstrap
    from core.config import load_config
    from core.exceptions import BootstrapFailed, ConfigError

    try:
        config = load_bootstrap_config(args.config)
        core = load_config(config.core.config)
    except ConfigError as exc:
        print(f"stackward bootstrap: {exc}", file=sys.stderr)
        return 2
    printer = _Printer()
    bootstrap = Bootstrap(config, core, printer)
    try:
        results = anyio.run(bootstrap.run)
    except ConfigError as exc:
        print(f"stackward bootstrap: {exc}", file=sys.stderr)
        return 2
    except BootstrapFailed as exc:
        print(f"stackward bootstrap: step {exc.step!r} failed: {exc}", file=sys.stderr)
        hint = f"{exc.hint}, {RESUME}" if exc.hint else f"fix it, {RESUME}"
        print(f"  to resume: {hint}", file=sys.stderr)
        return 1
    done = [r.step for r in results if r.status == "done"]
    if done:
        print(f"bootstrap complete: {len(done)} steps done ({', '.join(done)}), the rest unchanged")
    else:
        print("bootstrap complete: nothing to do, every step unchanged")
    return 0
