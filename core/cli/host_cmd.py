"""``stackward host install ssh://USER@HOST[:PORT] --name NAME``: put a periphery on a host.

Over SSH (the host key checked against known_hosts or a given fingerprint): ship this
stackward as a wheel, make a venv, generate the agent's key pair on the host (kept across
upgrades), write ``periphery.toml`` with the core's public key, start the agent as a systemd
unit (or a plain supervised process where systemd is absent), wait until it answers, then
print the ``[[server]]`` block that pins its key in the core (and write it to
``--server-file``). Running it again upgrades in place.

Exit codes: 0 installed; 1 the install failed on the host; 2 usage; 255 no trusted,
authenticated SSH session.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

UNREACHABLE = 255


def register(sub: Any) -> None:
    parser = sub.add_parser("host", help="manage hosts: install the agent over SSH")
    host_sub = parser.add_subparsers(dest="host_command", metavar="ACTION", required=True)
    p = host_sub.add_parser(
        "install",
        help="install or upgrade the periphery on a host over SSH, and pin its key",
        description="Install (or upgrade in place) the stackward agent on a host over SSH, then"
        " print the [[server]] block that pins its public key in the core.",
    )
    p.add_argument("target", metavar="ssh://USER@HOST[:PORT]")
    p.add_argument("--name", required=True, help="the server's name in the core's resources")
    p.add_argument(
        "--core-key",
        action="append",
        required=True,
        metavar="PUBLIC_KEY",
        help="the core's public key ('ssh-ed25519 AAAA…' line or .pub file); repeat to rotate",
    )
    ssh = p.add_argument_group("SSH")
    ssh.add_argument(
        "--identity",
        "-i",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="SSH private key (default: the SSH agent and ~/.ssh/id_*)",
    )
    ssh.add_argument(
        "--known-hosts",
        type=Path,
        default=None,
        metavar="FILE",
        help="known_hosts file holding the host's key (default ~/.ssh/known_hosts)",
    )
    ssh.add_argument(
        "--host-key-fingerprint",
        default="",
        metavar="SHA256:…",
        help="trust the host key with this fingerprint (ssh-keygen -lf on the host)",
    )
    ssh.add_argument("--sudo", action="store_true", help="run the install with sudo -n")
    ssh.add_argument("--connect-timeout", type=float, default=None, metavar="SECONDS")
    ssh.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="for the whole install once connected (default 600)",
    )
    where = p.add_argument_group("on the host")
    where.add_argument(
        "--dir",
        default=None,
        metavar="DIR",
        help="venv, config, key and logs (default /opt/stackward)",
    )
    where.add_argument(
        "--root-directory",
        default=None,
        metavar="DIR",
        help="the agent's root_directory (default /var/lib/stackward)",
    )
    where.add_argument(
        "--listen",
        default=None,
        metavar="HOST:PORT",
        help="where the agent listens (default 0.0.0.0:8120)",
    )
    where.add_argument(
        "--address",
        default="",
        metavar="URL",
        help="the URL the core dials (default ws://HOST:PORT/ws)",
    )
    where.add_argument("--python", default="python3", help="the host's Python 3.11+")
    where.add_argument(
        "--system-site-packages",
        action="store_true",
        help="the venv sees the host Python's packages",
    )
    where.add_argument(
        "--no-deps",
        action="store_true",
        help="install stackward only; the host's Python has its dependencies"
        " (an offline host; with --system-site-packages)",
    )
    where.add_argument(
        "--tls-cert",
        default="",
        metavar="FILE",
        help="certificate on the host: the agent serves wss:// (with --tls-key)",
    )
    where.add_argument("--tls-key", default="", metavar="FILE", help="its private key on the host")
    where.add_argument(
        "--service",
        default=None,
        metavar="UNIT",
        help="systemd unit name (default stackward-periphery)",
    )
    p.add_argument(
        "--server-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the [[server]] block to FILE (one of the core's resource files)",
    )
    p.set_defaults(handler=run, default_log_level="WARNING")


def run(args: argparse.Namespace) -> int:
    import anyio

    from core.exceptions import HostInstallError, HostUnreachable
    from core.hosts import spec as hostspec
    from core.keyfiles import read_public_key
    from protocol.exceptions import BadKey

    try:
        core_keys = tuple(read_public_key(k, Path.cwd()).openssh_line() for k in args.core_key)
        spec = hostspec.InstallSpec(
            name=args.name,
            target=hostspec.parse_target(args.target),
            core_keys=core_keys,
            directory=args.dir or hostspec.DEFAULT_DIRECTORY,
            root_directory=args.root_directory or hostspec.DEFAULT_ROOT,
            listen=args.listen or hostspec.DEFAULT_LISTEN,
            address=args.address,
            python=args.python,
            system_site_packages=args.system_site_packages,
            no_deps=args.no_deps,
            sudo=args.sudo,
            service=args.service or hostspec.DEFAULT_SERVICE,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
        fingerprint = args.host_key_fingerprint.strip()
        if fingerprint and not fingerprint.startswith("SHA256:"):
            raise HostInstallError("--host-key-fingerprint: give it as SHA256:… (ssh-keygen -lf)")
    except (HostInstallError, BadKey) as exc:
        print(f"stackward host install: {exc}", file=sys.stderr)
        return 2
    try:
        code: int = anyio.run(_install, args, spec, fingerprint)
    except HostUnreachable as exc:
        print(f"stackward host install: {exc}", file=sys.stderr)
        return UNREACHABLE
    except HostInstallError as exc:
        print(f"stackward host install: {exc}", file=sys.stderr)
        return 1
    return code


async def _install(args: argparse.Namespace, spec: Any, fingerprint: str) -> int:
    from core.hosts.install import (
        DEFAULT_CONNECT_TIMEOUT,
        DEFAULT_INSTALL_TIMEOUT,
        SshOptions,
        install,
    )
    from core.hosts.wheel import build_wheel

    options = SshOptions(
        identities=tuple(args.identity),
        known_hosts=args.known_hosts,
        host_key_fingerprint=fingerprint,
        connect_timeout=args.connect_timeout or DEFAULT_CONNECT_TIMEOUT,
        install_timeout=args.timeout or DEFAULT_INSTALL_TIMEOUT,
    )
    wheel = build_wheel()

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = await install(spec, options, wheel, say)
    key = result.public_key
    say(f"stackward: the agent runs ({result.service}); its key is {key.fingerprint()}")
    if args.server_file is None:
        say("stackward: add this block to the core's resources, then apply:")
    print(result.server_block, end="", flush=True)  # first: a failed write must not lose it
    if args.server_file is not None:
        _write_server_file(args.server_file, spec.name, result.server_block, say)
    return 0


def _write_server_file(path: Path, name: str, block: str, say: Any) -> None:
    """Put the block into ``path``: the ``[[server]]`` of that name is replaced, the rest of the
    file is kept byte for byte (``core.hosts.serverfile``); a new file holds the block alone.
    Says so when the pinned key changes."""
    import stat
    import tomllib

    from core.exceptions import HostInstallError
    from core.hosts.serverfile import ServerFileError, replace_server
    from core.keyfiles import write_new_file

    try:
        old = path.read_bytes().decode() if path.is_file() else ""  # newlines as they are
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o644
        text = replace_server(old, name, block)
        if old:
            new = tomllib.loads(block)["server"][0]["config"]["public_key"]
            for server in tomllib.loads(old).get("server", []):
                pinned = server.get("config", {}).get("public_key")
                if server.get("name") == name and pinned and pinned != new:
                    say(f"stackward: {path}: server {name!r} had another key pinned; replaced")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_new_file(path, text.encode(), mode)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename and str(exc.filename) != str(path) else ""
        raise HostInstallError(f"cannot write {path}: {where}{exc.strerror or exc}") from exc
    except (ServerFileError, UnicodeDecodeError) as exc:
        raise HostInstallError(f"cannot write {path}: {exc}") from exc
    say(f"stackward: wrote {path}; the core pins the key at its next sync (stackward apply)")
