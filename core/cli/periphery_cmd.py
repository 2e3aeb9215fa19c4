"""``stackward periphery --config FILE``: run the agent."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("periphery", help="run the agent on this host")
    parser.add_argument("--config", required=True, type=Path, metavar="FILE")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # The one place core reaches into periphery: starting the agent.
    from periphery.exceptions import ConfigError
    from periphery.main import serve

    try:
        return serve(args.config)
    except ConfigError as exc:
        print(f"stackward periphery: {exc}", file=sys.stderr)
        return 2
