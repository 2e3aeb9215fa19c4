"""The ``stackward`` command line: one sub-command a module.

Each module in this package exposes ``register(subparsers)``, which adds its parser and sets
``handler`` to a function ``(args) -> int`` (the exit code). Exit codes: 0 success, 1 the command
ran and found a fault, 2 usage error, 255 connection or authentication failure.

This package is the one place where ``core`` imports ``periphery`` (for ``stackward periphery``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

log = logging.getLogger(__name__)


def _command_modules() -> list[ModuleType]:
    """Every ``*_cmd`` module of this package, in name order."""
    names = sorted(
        info.name for info in pkgutil.iter_modules(__path__) if info.name.endswith("_cmd")
    )
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stackward",
        description="GitOps for Docker Swarm and Docker Compose.",
    )
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold (default INFO; quieter for one-shot commands)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level or getattr(args, "default_log_level", "INFO")),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = handler(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `stackward status | head`: the reader left. Not an error of ours; say nothing more
        # (and keep Python from complaining about stdout when it exits).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return code
