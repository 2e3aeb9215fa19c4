"""The SSH side of ``stackward host install`` (asyncssh).

The server's host key must be known before anything is sent: it is in ``known_hosts`` (the
user's, or the file given), or its SHA256 fingerprint was given on the command line. There is
no trust on first use: an unknown key ends the install with the fingerprint that was offered
and how to check and pin it.

Then: a staging directory on the host (``mktemp -d``) receives the wheel, ``periphery.toml``,
the systemd unit, the supervisor and the install script over SFTP; the script runs (under
``sudo -n`` when asked) and its output is streamed; the staging directory is removed.
"""

from __future__ import annotations

import hmac
import logging
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncssh

from core.exceptions import HostInstallError, HostUnreachable
from core.hosts.spec import (
    KEY_MARKER,
    SERVICE_MARKER,
    InstallSpec,
    install_script,
    render_periphery_toml,
    render_server_block,
    render_supervisor,
    render_systemd_unit,
    wrap_command,
)
from core.hosts.wheel import Wheel
from protocol.exceptions import BadKey
from protocol.keys import PublicKey, parse_public_key

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 15.0
"""Seconds for the TCP connection, the SSH handshake and authentication."""
DEFAULT_INSTALL_TIMEOUT = 600.0
"""Seconds for the whole install once connected (a first install may download packages)."""
SMALL_COMMAND_TIMEOUT = 30.0
"""Seconds for the staging commands (mktemp, rm)."""


@dataclass(frozen=True)
class SshOptions:
    identities: Sequence[Path] = ()  # empty: the SSH agent and ~/.ssh/id_*
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts
    host_key_fingerprint: str = ""  # "SHA256:..."; trusted besides known_hosts
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    install_timeout: float = DEFAULT_INSTALL_TIMEOUT


@dataclass(frozen=True)
class InstallResult:
    public_key: PublicKey
    service: str  # "systemd UNIT" or "supervised PIDFILE"
    server_block: str


class _HostKeyCheck(asyncssh.SSHClient):
    """Accepts a host key that matches the given fingerprint; remembers what was offered."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.offered: list[str] = []

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        found = key.get_fingerprint("sha256")
        if self.fingerprint and hmac.compare_digest(found, self.fingerprint):
            return True
        self.offered.append(f"{key.get_algorithm()} {found}")
        return False


def _known_hosts_arg(options: SshOptions) -> str | bytes:
    path = options.known_hosts or Path("~/.ssh/known_hosts").expanduser()
    if path.is_file():
        return str(path)
    if options.known_hosts is not None and not options.host_key_fingerprint:
        raise HostUnreachable(f"--known-hosts {path}: no such file")
    return b""  # nothing known: only the fingerprint, if given, is trusted


def _untrusted_message(spec: InstallSpec, options: SshOptions, offered: list[str]) -> str:
    target = spec.target
    where = options.known_hosts or Path("~/.ssh/known_hosts")
    scan_port = f"-p {target.port} " if target.port != 22 else ""
    return (
        f"the SSH host key of {target.host}:{target.port} is not trusted"
        + (f" (it offered {', '.join(offered)})" if offered else "")
        + (
            "; it does not match --host-key-fingerprint"
            if options.host_key_fingerprint
            else f"; no key for this host in {where} matches it"
        )
        + ". Check the key on the host itself (ssh-keygen -lf"
        " /etc/ssh/ssh_host_ed25519_key.pub), then either pass --host-key-fingerprint"
        f" SHA256:... or add it to {where} (ssh-keyscan {scan_port}{target.host}, compare the"
        " fingerprint, append the line)"
    )


async def _connect(spec: InstallSpec, options: SshOptions) -> asyncssh.SSHClientConnection:
    checker = _HostKeyCheck(options.host_key_fingerprint)
    target = spec.target
    client_keys: list[str] | None = [str(p) for p in options.identities] or None
    try:
        with anyio.fail_after(options.connect_timeout):
            conn, _ = await asyncssh.create_connection(
                lambda: checker,
                target.host,
                target.port,
                username=target.user,
                known_hosts=_known_hosts_arg(options),
                client_keys=client_keys,
                password=None,
                kbdint_auth=False,
                password_auth=False,
                connect_timeout=options.connect_timeout,
                login_timeout=options.connect_timeout,
            )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise HostUnreachable(_untrusted_message(spec, options, checker.offered)) from exc
    except asyncssh.PermissionDenied as exc:
        raise HostUnreachable(
            f"{target}: authentication failed ({exc.reason}); the SSH key"
            + (f" {', '.join(client_keys)}" if client_keys else "s of the agent and ~/.ssh")
            + " must be in the user's authorized_keys"
        ) from exc
    except TimeoutError as exc:
        raise HostUnreachable(
            f"{target}: no SSH session within {options.connect_timeout:g}s"
        ) from exc
    except (OSError, asyncssh.Error) as exc:
        raise HostUnreachable(f"{target}: cannot connect: {exc}") from exc
    except ValueError as exc:  # asyncssh: unreadable client key or known_hosts file
        raise HostUnreachable(f"{target}: {exc}") from exc
    log.info("connected to %s", target)
    return conn


async def _run_small(conn: asyncssh.SSHClientConnection, command: str) -> str:
    result = await conn.run(command, check=False, timeout=SMALL_COMMAND_TIMEOUT)
    if result.exit_status != 0:
        raise HostInstallError(f"{command!r} failed on the host: {str(result.stderr).strip()}")
    return str(result.stdout)


async def _upload(
    conn: asyncssh.SSHClientConnection, staging: str, files: dict[str, bytes]
) -> None:
    async with conn.start_sftp_client() as sftp:
        for name, data in files.items():
            async with sftp.open(f"{staging}/{name}", "wb") as handle:
                await handle.write(data)


async def _run_script(
    conn: asyncssh.SSHClientConnection, command: str, say: Callable[[str], None]
) -> tuple[int, list[str], list[str]]:
    """Run the install script, passing its progress lines to ``say`` as they come."""
    out: list[str] = []
    err: list[str] = []
    async with conn.create_process(command, encoding="utf-8", errors="replace") as process:

        async def read(stream: asyncssh.SSHReader[str], lines: list[str], show: bool) -> None:
            async for line in stream:
                lines.append(line.rstrip("\n"))
                if show and line.startswith("stackward: "):
                    say(line.rstrip("\n"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(read, process.stdout, out, True)
            tg.start_soon(read, process.stderr, err, False)
        completed = await process.wait()
    status = completed.exit_status if completed.exit_status is not None else 255
    return status, out, err


async def install(
    spec: InstallSpec,
    options: SshOptions,
    wheel: Wheel,
    say: Callable[[str], None] = lambda line: None,
) -> InstallResult:
    """Install or upgrade the agent on ``spec.target``; the key it will be pinned with."""
    conn = await _connect(spec, options)
    async with conn:
        try:
            with anyio.fail_after(options.install_timeout):
                staging = await _run_small(conn, "mktemp -d /tmp/stackward-install.XXXXXX")
                staging = staging.strip()
                if not staging.startswith("/tmp/stackward-install."):
                    raise HostInstallError(f"mktemp on the host answered {staging!r}")
                try:
                    say(f"stackward: uploading {wheel.filename} to {spec.target.host}")
                    await _upload(
                        conn,
                        staging,
                        {
                            wheel.filename: wheel.data,
                            "periphery.toml": render_periphery_toml(spec).encode(),
                            "unit": render_systemd_unit(spec).encode(),
                            "supervise": render_supervisor(spec).encode(),
                            "install.sh": install_script(spec, staging, wheel.filename).encode(),
                        },
                    )
                    status, out, err = await _run_script(
                        conn, wrap_command(spec, f"{staging}/install.sh"), say
                    )
                finally:
                    with anyio.move_on_after(SMALL_COMMAND_TIMEOUT, shield=True):
                        await conn.run(f"rm -rf {shlex.quote(staging)}", check=False)
        except TimeoutError as exc:
            raise HostInstallError(
                f"the install on {spec.target.host} took longer than {options.install_timeout:g}s"
            ) from exc
        except (OSError, asyncssh.Error) as exc:
            raise HostInstallError(f"SSH session to {spec.target.host} failed: {exc}") from exc
    if status != 0:
        detail = "\n".join((err or out)[-20:])
        raise HostInstallError(f"the install script failed on the host (exit {status}):\n{detail}")
    key_lines = [line[len(KEY_MARKER) :] for line in out if line.startswith(KEY_MARKER)]
    services = [line[len(SERVICE_MARKER) :] for line in out if line.startswith(SERVICE_MARKER)]
    if not key_lines:
        raise HostInstallError("the install script did not report the agent's public key")
    try:
        public_key = parse_public_key(key_lines[-1])
    except BadKey as exc:
        raise HostInstallError(f"the agent's public key on the host is unusable: {exc}") from exc
    return InstallResult(
        public_key=public_key,
        service=services[-1] if services else "",
        server_block=render_server_block(spec.name, spec.core_address, public_key.openssh_line()),
    )
