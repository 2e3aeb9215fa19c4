"""The agent's one config object, loaded from TOML and checked before anything starts.

Every problem names the file, the key and what is wrong, e.g.
``periphery.toml: key 'core_public_keys': no such file: /etc/stackward/core.pub``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import msgspec

from periphery.exceptions import ConfigError
from protocol.channel import ChannelSettings
from protocol.exceptions import BadKey
from protocol.keys import (
    PrivateKey,
    PublicKey,
    looks_like_public_key_line,
    parse_private_key,
    parse_public_key,
    permissions_problem,
)


class PeripheryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The TOML file as written. Paths are relative to the file's directory."""

    private_key: str
    core_public_keys: list[str]
    root_directory: str
    listen: str = "0.0.0.0:8120"  # "" listens nowhere (dial-out only)
    tls_cert: str = ""
    tls_key: str = ""
    core_address: str = ""  # ws(s)://core:9120 — dial the core instead of waiting for it
    server_name: str = ""  # this host's name in the core's resources (with core_address)
    core_tls_verify: bool = False  # check the core's certificate against the system CAs
    # Channel tuning; the defaults suit nearly everyone.
    heartbeat_interval: float = 10.0
    handshake_timeout: float = 5.0
    max_frame_bytes: int = 16 * 1024 * 1024
    max_in_flight: int = 64
    auth_failure_limit: int = 20  # failures from one address before its failures go unlogged
    auth_failure_window: float = 60.0
    unauthenticated_per_address: int = 32  # connections not yet authenticated, the oldest evicted
    unauthenticated_total: int = 256
    reconnect_initial_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    kill_grace: float = 2.0  # SIGTERM to SIGKILL, when a command is cancelled or times out


@dataclass(frozen=True)
class LoadedConfig:
    """The config with its keys loaded and its paths resolved."""

    path: Path
    raw: PeripheryConfig
    private_key: PrivateKey
    core_keys: tuple[PublicKey, ...]
    root: Path
    listen_host: str
    listen_port: int | None  # None: do not listen
    tls_cert: Path | None
    tls_key: Path | None
    channel: ChannelSettings


def _error(path: Path, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: key '{key}': {problem}")


def _resolve(base: Path, value: str) -> Path:
    return (base / os.path.expanduser(value)).resolve()


def read_public_key(spec: str, base: Path) -> PublicKey:
    """A public key given as an ``ssh-ed25519 AAAA...`` line or a path to a ``.pub`` file."""
    if looks_like_public_key_line(spec):
        return parse_public_key(spec)
    path = _resolve(base, spec)
    try:
        return parse_public_key(path.read_text())
    except OSError as exc:
        raise BadKey(f"cannot read {path}: {exc.strerror}") from exc


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"'{value}' is not HOST:PORT (e.g. 0.0.0.0:8120)")
    return host.strip("[]") or "0.0.0.0", int(port)


def load_config(path: Path) -> LoadedConfig:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        raw = msgspec.convert(data, PeripheryConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_describe_validation(exc)}") from exc
    base = path.parent

    try:
        key_path = _resolve(base, raw.private_key)
        with open(key_path, "rb") as handle:
            st = os.fstat(handle.fileno())
            private_key = parse_private_key(handle.read())  # not a key at all: say that first
        problem = permissions_problem(str(key_path), st.st_mode, st.st_uid, os.getuid())
        if problem is not None:  # as OpenSSH refuses such a key
            raise BadKey(problem)
    except OSError as exc:
        raise _error(path, "private_key", f"cannot read {key_path}: {exc.strerror}") from exc
    except BadKey as exc:
        raise _error(path, "private_key", str(exc)) from exc

    if not raw.core_public_keys:
        raise _error(path, "core_public_keys", "list at least one core public key")
    core_keys = []
    for index, spec in enumerate(raw.core_public_keys):
        try:
            core_keys.append(read_public_key(spec, base))
        except BadKey as exc:
            raise _error(path, f"core_public_keys[{index}]", str(exc)) from exc

    root = _resolve(base, raw.root_directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _error(path, "root_directory", f"cannot create {root}: {exc.strerror}") from exc
    if not os.access(root, os.W_OK | os.X_OK):
        raise _error(path, "root_directory", f"{root} is not writable")

    listen_host, listen_port = "", None
    if raw.listen:
        try:
            listen_host, listen_port = parse_listen(raw.listen)
        except ValueError as exc:
            raise _error(path, "listen", str(exc)) from exc
    elif not raw.core_address:
        raise _error(path, "listen", "empty, and no core_address: the agent would be unreachable")

    if bool(raw.tls_cert) != bool(raw.tls_key):
        raise _error(path, "tls_cert" if raw.tls_key else "tls_key", "set both or neither")
    tls_cert = _resolve(base, raw.tls_cert) if raw.tls_cert else None
    tls_key = _resolve(base, raw.tls_key) if raw.tls_key else None
    for key, file in (("tls_cert", tls_cert), ("tls_key", tls_key)):
        if file is not None and not file.is_file():
            raise _error(path, key, f"no such file: {file}")

    if raw.core_address:
        if not raw.core_address.startswith(("ws://", "wss://")):
            raise _error(path, "core_address", "must start with ws:// or wss://")
        if not raw.server_name:
            raise _error(path, "server_name", "required with core_address: the core's name for us")

    for key in ("heartbeat_interval", "handshake_timeout", "kill_grace", "reconnect_max_delay"):
        if getattr(raw, key) <= 0:
            raise _error(path, key, "must be greater than 0")
    for key in ("unauthenticated_per_address", "unauthenticated_total"):
        if getattr(raw, key) < 1:
            raise _error(path, key, "must be at least 1")
    if raw.max_in_flight < 1 or raw.max_frame_bytes < 64 * 1024:
        raise _error(
            path,
            "max_in_flight" if raw.max_in_flight < 1 else "max_frame_bytes",
            "too small (max_in_flight ≥ 1, max_frame_bytes ≥ 65536)",
        )

    channel = ChannelSettings(
        max_frame_bytes=raw.max_frame_bytes,
        handshake_timeout=raw.handshake_timeout,
        heartbeat_interval=raw.heartbeat_interval,
        max_in_flight=raw.max_in_flight,
    )
    return LoadedConfig(
        path=path,
        raw=raw,
        private_key=private_key,
        core_keys=tuple(core_keys),
        root=root,
        listen_host=listen_host,
        listen_port=listen_port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        channel=channel,
    )


def _describe_validation(exc: msgspec.ValidationError) -> str:
    """Turn msgspec's ``Expected `str`, got `int` - at `$.listen``` into key-first prose."""
    text = str(exc)
    message, sep, where = text.rpartition(" - at `")
    if sep:
        key = where.rstrip("`").removeprefix("$.").removeprefix("$")
        if key:
            return f"key '{key}': {message[0].lower()}{message[1:]}"
        text = message
    if text.startswith("Object contains unknown field"):
        field_name = text.split("`")[1]
        known = ", ".join(PeripheryConfig.__struct_fields__)
        return f"key '{field_name}': unknown key (known keys: {known})"
    if text.startswith("Object missing required field"):
        field_name = text.split("`")[1]
        return f"key '{field_name}': required, and missing"
    return text
