"""What ``stackward host install`` does on a host, as text: pure, no I/O.

Every value that reaches a remote shell goes through ``shlex.quote``; paths are also restricted
to plain characters (they end up in a systemd unit too, whose quoting differs from the shell's).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from core.exceptions import HostInstallError

DEFAULT_DIRECTORY = "/opt/stackward"
DEFAULT_ROOT = "/var/lib/stackward"
DEFAULT_LISTEN = "0.0.0.0:8120"
DEFAULT_SERVICE = "stackward-periphery"
READY_TIMEOUT = 30.0
"""Seconds the install script waits for the restarted agent to accept connections."""
STOP_TIMEOUT = 10.0
"""Seconds the install script waits for the old supervised agent to stop before killing it."""

KEY_MARKER = "stackward-public-key: "
SERVICE_MARKER = "stackward-service: "

# Used with fullmatch: ``$`` would let a trailing newline through (and split a unit's line).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_PATH = re.compile(r"/[A-Za-z0-9._/+@-]*")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")


@dataclass(frozen=True)
class SshTarget:
    """``ssh://USER@HOST[:PORT]``."""

    user: str
    host: str
    port: int = 22

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port != 22 else ""
        return f"ssh://{self.user}@{host}{port}"


def parse_target(url: str) -> SshTarget:
    """Parse ``ssh://USER@HOST[:PORT]`` (IPv6 hosts in brackets); anything else is refused."""
    parts = urlsplit(url.strip())
    if parts.scheme != "ssh":
        raise HostInstallError(f"{url!r}: the host is given as ssh://USER@HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise HostInstallError(
            f"{url!r}: only ssh://USER@HOST[:PORT] (no path, password, query or fragment)"
        )
    user = parts.username or ""
    if not user:
        raise HostInstallError(f"{url!r}: name the SSH user: ssh://USER@HOST[:PORT]")
    if not _USER.fullmatch(user):
        raise HostInstallError(f"{url!r}: {user!r} is not a valid user name")
    try:
        port = parts.port
    except ValueError as exc:
        raise HostInstallError(f"{url!r}: the port is not a number from 1 to 65535") from exc
    host = parts.hostname or ""
    if not host:
        raise HostInstallError(f"{url!r}: no host")
    if port == 0:
        raise HostInstallError(f"{url!r}: the port is not a number from 1 to 65535")
    return SshTarget(user=user, host=host, port=port or 22)


def _listen_port(listen: str) -> int:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
        raise HostInstallError(f"--listen {listen!r}: expected HOST:PORT, e.g. 0.0.0.0:8120")
    return int(port)


def _listen_host(listen: str) -> str:
    return listen.rpartition(":")[0].strip("[]") or "0.0.0.0"


@dataclass(frozen=True)
class InstallSpec:
    """Everything the install needs to know, checked on construction."""

    name: str
    target: SshTarget
    core_keys: tuple[str, ...]  # "ssh-ed25519 AAAA..." lines
    directory: str = DEFAULT_DIRECTORY
    root_directory: str = DEFAULT_ROOT
    listen: str = DEFAULT_LISTEN
    address: str = ""  # what the core dials; default ws://HOST:PORT/ws
    python: str = "python3"
    system_site_packages: bool = False
    no_deps: bool = False
    sudo: bool = False
    service: str = DEFAULT_SERVICE
    tls_cert: str = ""  # paths on the host; both set: the agent serves wss://
    tls_key: str = ""
    ready_timeout: float = READY_TIMEOUT

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise HostInstallError(
                f"--name {self.name!r}: letters, digits, '.', '_' and '-' (at most 63)"
            )
        if not self.core_keys:
            raise HostInstallError("give the core's public key (--core-key)")
        for flag, path in (("--dir", self.directory), ("--root-directory", self.root_directory)):
            if not _PATH.fullmatch(path) or ".." in PurePosixPath(path).parts or path == "/":
                raise HostInstallError(
                    f"{flag} {path!r}: an absolute path of letters, digits and . _ - + @ /"
                )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise HostInstallError("--tls-cert and --tls-key: give both or neither")
        for flag, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            if path and not _PATH.fullmatch(path):
                raise HostInstallError(f"{flag} {path!r}: an absolute path on the host")
        if not _NAME.fullmatch(self.service):
            raise HostInstallError(f"--service {self.service!r}: not a valid unit name")
        if not self.python or any(c.isspace() for c in self.python):
            raise HostInstallError(f"--python {self.python!r}: a command or path, no spaces")
        _listen_port(self.listen)
        if self.address and not self.address.startswith(("ws://", "wss://")):
            raise HostInstallError(f"--address {self.address!r}: must start with ws:// or wss://")

    # ------------------------------------------------------------------------------ paths

    @property
    def venv(self) -> str:
        return f"{self.directory}/venv"

    @property
    def key_path(self) -> str:
        return f"{self.directory}/periphery.key"

    @property
    def config_path(self) -> str:
        return f"{self.directory}/periphery.toml"

    @property
    def supervisor_path(self) -> str:
        return f"{self.directory}/supervise"

    @property
    def pidfile(self) -> str:
        return f"{self.directory}/supervise.pid"

    @property
    def log_path(self) -> str:
        return f"{self.directory}/periphery.log"

    @property
    def unit_path(self) -> str:
        return f"/etc/systemd/system/{self.service}.service"

    @property
    def core_address(self) -> str:
        """The URL the core dials to reach this agent."""
        if self.address:
            return self.address
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        scheme = "wss" if self.tls_cert else "ws"
        return f"{scheme}://{host}:{_listen_port(self.listen)}/ws"


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def render_periphery_toml(spec: InstallSpec) -> str:
    keys = ",\n".join(f"    {toml_string(k)}" for k in spec.core_keys)
    return (
        f"# Written by `stackward host install` for server {toml_string(spec.name)};\n"
        "# rewritten by every install (the key pair beside it is kept).\n"
        f"listen = {toml_string(spec.listen)}\n"
        f"private_key = {toml_string(spec.key_path)}\n"
        f"core_public_keys = [\n{keys},\n]\n"
        f"root_directory = {toml_string(spec.root_directory)}\n"
        + (
            f"tls_cert = {toml_string(spec.tls_cert)}\ntls_key = {toml_string(spec.tls_key)}\n"
            if spec.tls_cert
            else ""
        )
    )


def render_server_block(name: str, address: str, public_key: str) -> str:
    """The ``[[server]]`` resource that pins the agent's key in the core."""
    return (
        "[[server]]\n"
        f"name = {toml_string(name)}\n"
        "[server.config]\n"
        f"address = {toml_string(address)}\n"
        f"public_key = {toml_string(public_key)}\n"
    )


def render_systemd_unit(spec: InstallSpec) -> str:
    return (
        "[Unit]\n"
        f"Description=stackward periphery agent ({spec.name})\n"
        "Wants=network-online.target\n"
        "After=network-online.target docker.service\n"
        "\n"
        "[Service]\n"
        f"ExecStart={spec.venv}/bin/stackward periphery --config {spec.config_path}\n"
        "Restart=always\n"
        "RestartSec=2\n"
        "KillMode=mixed\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def render_supervisor(spec: InstallSpec) -> str:
    """A plain supervisor for hosts without systemd: restarts the agent when it exits."""
    q = shlex.quote
    return f"""#!/bin/sh
# Written by `stackward host install`: keeps the stackward agent running where systemd is
# absent. Restarts it 1 s after it exits; SIGTERM stops the agent, then this script.
echo $$ > {q(spec.pidfile)}
child=
stop() {{
    if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; wait "$child"; fi
    exit 0
}}
trap stop TERM INT
while :; do
    {q(spec.venv + "/bin/stackward")} periphery --config {q(spec.config_path)} &
    child=$!
    wait "$child" || true
    child=
    sleep 1
done
"""


_PROBE = (
    "import socket,sys,time\n"
    "end=time.monotonic()+float(sys.argv[3])\n"
    "while True:\n"
    "    try:\n"
    "        socket.create_connection((sys.argv[1],int(sys.argv[2])),1).close();break\n"
    "    except OSError:\n"
    "        if time.monotonic()>end: sys.exit(1)\n"
    "        time.sleep(0.1)\n"
)


def install_script(spec: InstallSpec, staging: str, wheel_name: str) -> str:
    """The ``sh`` script run on the host: staging holds the wheel, the config, unit and
    supervisor. Idempotent: a second run upgrades in place, keeping the venv and the key."""
    q = shlex.quote
    py = q(f"{spec.venv}/bin/python")
    pip = f"{py} -m pip install -q --disable-pip-version-check --no-input"
    wheel = q(f"{staging}/{wheel_name}")
    ssp = " --system-site-packages" if spec.system_site_packages else ""
    probe_host = _listen_host(spec.listen)
    if probe_host in ("0.0.0.0", "::", ""):
        probe_host = "127.0.0.1"
    lines = [
        "set -eu",
        "umask 022",
        f"mkdir -p {q(spec.directory)} {q(spec.root_directory)}",
        f"if [ ! -x {py} ]; then",
        f"    echo 'stackward: making the venv {spec.venv}'",
    ]
    if spec.system_site_packages:
        # The host's pip serves the venv when it has one: no ensurepip, seconds faster.
        lines += [
            f"    if {q(spec.python)} -c 'import pip' >/dev/null 2>&1; then",
            f"        {q(spec.python)} -m venv{ssp} --without-pip {q(spec.venv)}",
            "    else",
            f"        {q(spec.python)} -m venv{ssp} {q(spec.venv)}",
            "    fi",
        ]
    else:
        lines.append(f"    {q(spec.python)} -m venv {q(spec.venv)}")
    lines += [
        "fi",
        "echo 'stackward: installing the package'",
        f"{pip} --no-deps --force-reinstall {wheel}",
    ]
    if not spec.no_deps:
        lines.append(f"{pip} {wheel}")
    lines += [
        f"if [ ! -f {q(spec.key_path)} ]; then",
        f"    {q(spec.venv + '/bin/stackward')} keys new {q(spec.key_path)}"
        f" --comment {q('stackward@' + spec.name)} >/dev/null",
        "fi",
        f"cp {q(staging + '/periphery.toml')} {q(spec.config_path)}",
        f"chmod 600 {q(spec.config_path)} {q(spec.key_path)}",
        # Stop whatever runs the agent now: a supervisor of ours, then start it the chosen way.
        f"if [ -f {q(spec.pidfile)} ]; then",
        f"    pid=$(cat {q(spec.pidfile)})",
        '    if kill -0 "$pid" 2>/dev/null && grep -q supervise "/proc/$pid/cmdline" 2>/dev/null;'
        " then",
        '        kill -TERM "$pid"',
        "        i=0",
        f'        while kill -0 "$pid" 2>/dev/null && [ "$i" -lt {int(STOP_TIMEOUT * 10)} ]; do',
        "            sleep 0.1; i=$((i + 1))",
        "        done",
        '        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true',
        "    fi",
        f"    rm -f {q(spec.pidfile)}",
        "fi",
        "if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then",
        f"    cp {q(staging + '/unit')} {q(spec.unit_path)}",
        "    systemctl daemon-reload",
        f"    systemctl enable --quiet {q(spec.service)}",
        f"    systemctl restart {q(spec.service)}",
        f"    echo {q(SERVICE_MARKER + 'systemd ' + spec.service)}",
        "else",
        f"    cp {q(staging + '/supervise')} {q(spec.supervisor_path)}",
        f"    chmod 755 {q(spec.supervisor_path)}",
        f"    : > {q(spec.log_path)}",
        f"    setsid {q(spec.supervisor_path)} >> {q(spec.log_path)} 2>&1 < /dev/null &",
        f"    echo {q(SERVICE_MARKER + 'supervised ' + spec.pidfile)}",
        "fi",
        f"if ! {py} -c {q(_PROBE)} {q(probe_host)} {_listen_port(spec.listen)}"
        f" {spec.ready_timeout:g}; then",
        f"    echo {q(f'stackward: the agent does not answer on {spec.listen}')} >&2",
        f"    tail -n 20 {q(spec.log_path)} >&2 2>/dev/null"
        f" || journalctl -n 20 -u {q(spec.service)} >&2 || true",
        "    exit 1",
        "fi",
        f'echo "{KEY_MARKER}$(cat {q(spec.key_path + ".pub")})"',
    ]
    return "\n".join(lines) + "\n"


def wrap_command(spec: InstallSpec, script_path: str) -> str:
    """The remote command line that runs the uploaded script (under ``sudo -n`` if asked)."""
    command = f"sh {shlex.quote(script_path)}"
    return f"sudo -n {command}" if spec.sudo else command
