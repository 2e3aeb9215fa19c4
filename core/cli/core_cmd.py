"""``stackward core --config FILE``: run the control plane."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "core",
        help="run the control plane",
        description="Run the stackward core: HTTP API, plans and applies (listens on 9120"
        " unless the config says otherwise).",
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the core's TOML config")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from core.config import load_config  # heavy imports kept out of register()
    from core.exceptions import ConfigError, StoreError
    from core.server import load_private_key

    try:
        config = load_config(args.config)
        if config.private_key:
            load_private_key(config)  # a bad key stops the start, naming the key
    except ConfigError as exc:
        print(f"stackward core: {exc}", file=sys.stderr)
        return 2
    from core.server import run as run_core

    try:
        run_core(config)
    except StoreError as exc:
        print(f"stackward core: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"stackward core: cannot listen on {config.listen}: {exc}", file=sys.stderr)
        return 1
    return 0
