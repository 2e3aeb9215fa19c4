"""``stackward exec``: run one command on a periphery, for debugging the channel.

    stackward exec --periphery ws://HOST:8120/ws --key CORE_KEY --periphery-key PUB -- CMD ARGS…

Output streams to stdout/stderr as it comes; the exit code is the remote one. A connection or
authentication failure exits 255 with a one-line reason.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONNECT_FAILED = 255


def register(sub: Any) -> None:
    parser = sub.add_parser("exec", help="run a command on a periphery (debugging)")
    parser.add_argument("--periphery", required=True, metavar="URL", help="ws(s)://HOST:8120/ws")
    parser.add_argument("--key", required=True, type=Path, metavar="CORE_PRIVATE_KEY")
    parser.add_argument(
        "--periphery-key",
        required=True,
        metavar="PUBLIC_KEY",
        help="the periphery's public key: an 'ssh-ed25519 AAAA…' line or a .pub file",
    )
    parser.add_argument("--cwd", default="", help="directory under the agent's root")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ARGS")
    parser.set_defaults(handler=run, default_log_level="ERROR")


def run(args: argparse.Namespace) -> int:
    import anyio

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("stackward exec: give the command after --", file=sys.stderr)
        return 2
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"stackward exec: --env wants KEY=VALUE, not {item!r}", file=sys.stderr)
            return 2
        env[key] = value
    code: int = anyio.run(_exec, args, argv, env)
    return code


async def _exec(args: argparse.Namespace, argv: list[str], env: dict[str, str]) -> int:
    import anyio

    from core.exceptions import PeripheryUnavailable
    from core.keyfiles import read_private_key, read_public_key
    from core.pool import PeripheryPool, PoolSettings, ServerEndpoint
    from protocol.exceptions import BadKey, ChannelError, RemoteError
    from protocol.messages import Run, Stream
    from protocol.transport import ChannelSettings, raise_for_result

    try:
        private_key = read_private_key(args.key)
        periphery_key = read_public_key(args.periphery_key, Path.cwd())
    except BadKey as exc:
        print(f"stackward exec: {exc}", file=sys.stderr)
        return 2

    settings = PoolSettings(channel=ChannelSettings(connect_timeout=args.connect_timeout))
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    async with PeripheryPool(private_key, settings) as pool:
        started = time.monotonic()
        pool.set_servers([ServerEndpoint("target", periphery_key, args.periphery)])
        try:
            channel = await pool.channel("target", args.connect_timeout + 5, fail_fast=True)
        except PeripheryUnavailable as exc:
            print(f"stackward exec: {exc}", file=sys.stderr)
            return CONNECT_FAILED
        log.info(
            "connected to %s in %.3fs (TCP, upgrade, handshake)",
            args.periphery,
            time.monotonic() - started,
        )
        command = Run(argv=argv, cwd=args.cwd, env=env, timeout=args.timeout)
        try:
            async with channel.call(command) as call:
                async for chunk in call:
                    target = out if chunk.stream is Stream.STDOUT else err
                    target.write(chunk.data)
                    target.flush()
                assert call.result is not None
                return raise_for_result(call.result)
        except RemoteError as exc:
            print(f"stackward exec: {exc}", file=sys.stderr)
            return 1 if exc.code.value != "timeout" else 124
        except ChannelError as exc:
            print(f"stackward exec: connection lost: {exc}", file=sys.stderr)
            return CONNECT_FAILED
        except anyio.get_cancelled_exc_class():
            raise
