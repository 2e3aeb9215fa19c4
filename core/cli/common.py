"""What the commands that talk to a running core share: the client (``--url`` / ``--token``, or
``STACKWARD_URL`` / ``STACKWARD_TOKEN``), colors, and the exit codes of the API's errors.

Exit codes: 0 done, 1 the core refused or a deploy failed, 2 usage, 255 the core cannot be
reached or the token is refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from functools import partial

import anyio

from core.client import DEFAULT_URL, ApiError, CoreClient, Unreachable

__all__ = ["DEFAULT_URL", "Failure", "add_connection", "colors", "run_with_client"]


class Failure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url", default=None, help=f"the core's URL (default $STACKWARD_URL or {DEFAULT_URL})"
    )
    p.add_argument("--token", default=None, help="API token (default $STACKWARD_TOKEN)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")


def colors(args: argparse.Namespace) -> dict[str, str]:
    on = getattr(args, "color", "auto") == "always" or (
        getattr(args, "color", "auto") == "auto"
        and sys.stdout.isatty()
        and not os.environ.get("NO_COLOR")
    )
    names = {
        "green": "\033[32m",
        "yellow": "\033[33m",
        "red": "\033[31m",
        "bold": "\033[1m",
        "dim": "\033[2m",
        "reset": "\033[0m",
    }
    return names if on else dict.fromkeys(names, "")


def run_with_client(
    args: argparse.Namespace, what: str, body: Callable[[CoreClient], Awaitable[int]]
) -> int:
    """Run ``body`` with a client of the core; an API error, an unreachable core or a
    ``Failure`` becomes a one-line message and its exit code."""
    client = CoreClient.from_env(getattr(args, "url", None), getattr(args, "token", None))
    if not client.token:
        print(
            f"stackward {what}: no API token: pass --token or set STACKWARD_TOKEN", file=sys.stderr
        )
        return 2

    async def main() -> int:
        async with client:
            return await body(client)

    try:
        return anyio.run(partial(main))
    except ApiError as exc:
        print(f"stackward {what}: {exc}", file=sys.stderr)
        return 255 if exc.status == 401 else 1
    except Unreachable as exc:
        print(f"stackward {what}: {exc}", file=sys.stderr)
        return 255
    except Failure as exc:
        print(f"stackward {what}: {exc}", file=sys.stderr)
        return exc.code
