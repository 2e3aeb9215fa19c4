"""A small SSH server standing in for a host's sshd in tests (asyncssh).

    python tests/support/ssh_host.py --listen ADDR --host-key FILE --authorized-keys FILE

Runs every command under ``/bin/sh -c`` with this process's environment, serves SFTP on the
whole file system, accepts only the public keys in the authorized-keys file, and prints
``ssh host listening on ADDR:PORT`` on stderr when ready. Started by the tests inside a network
namespace (``nsenter --net=...``), so the commands run "on the second host".
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import asyncssh

log = logging.getLogger("ssh_host")


async def run_command(process: asyncssh.SSHServerProcess[bytes]) -> None:
    command = process.command or "exec /bin/sh"
    local = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await process.redirect(stdin=local.stdin, stdout=local.stdout, stderr=local.stderr)
    process.exit(await local.wait())
    await process.wait_closed()


async def serve(args: argparse.Namespace) -> None:
    server = await asyncssh.create_server(
        asyncssh.SSHServer,
        args.listen,
        args.port,
        server_host_keys=[args.host_key],
        authorized_client_keys=args.authorized_keys,
        process_factory=run_command,
        sftp_factory=True,
        encoding=None,
        allow_scp=True,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"ssh host listening on {args.listen}:{port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host-key", required=True)
    parser.add_argument("--authorized-keys", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
