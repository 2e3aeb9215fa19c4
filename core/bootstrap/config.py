"""The bootstrap's typed configuration, read from TOML once and passed explicitly.

::

    state_dir = "/var/lib/stackward/bootstrap"  # logs and pid files of supervised processes
    server = "manager"                # the manager's [[server]] in the resources (with address)
    resources = ["/etc/stackward/resources.toml"]  # default: the core config's resources
    stacks = ["op-connect", "caddy"]  # the infrastructure stacks, deployed in this order
    stack_timeout = 900               # seconds, per stack (its health gate included)

    [swarm]
    advertise_addr = "192.168.1.10"   # for docker swarm init when the engine is in no swarm

    [periphery]
    config = "/etc/stackward/periphery.toml"
    systemd_unit = "stackward-periphery.service"  # used where systemd runs; else a process
    start_timeout = 30

    [core]
    config = "/etc/stackward/core.toml"
    stack = "stackward"               # run the core as this stack when `image` is present
    image = "stackward:latest"
    start_timeout = 60                # until /healthz answers
    sync = "local"                    # the sync to run once the core answers ("" : none)
    sync_timeout = 900

    networks = ["proxy"]              # overlay networks a stack declares external: made
                                      # (attachable) by the stack's deploy when missing

    [[secret]]                        # swarm secrets: one source each, values never shown
    name = "db_password"
    env = "DB_PASSWORD"               # or file = "/root/db_password", or stdin = true
    plain = false                     # true: made under this plain name (a stack declares it
                                      # external), not versioned; never changed once made

Relative paths are taken from the file's directory. Every problem raises
:class:`~core.exceptions.ConfigError` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from core.config import NETWORK_NAME as _NETWORK
from core.deploy.secrets import valid_logical_name
from core.exceptions import ConfigError
from core.tomlconfig import load_struct


class SwarmSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    advertise_addr: str = ""
    init: bool = True  # False: never run docker swarm init (an inactive swarm is an error)


class PeripherySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    config: str
    systemd_unit: str = ""
    start_timeout: float = 30.0


class CoreSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    config: str
    stack: str = ""
    image: str = "stackward:latest"
    start_timeout: float = 60.0
    sync: str = "local"
    sync_timeout: float = 900.0


class SecretSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    env: str = ""
    file: str = ""
    stdin: bool = False
    plain: bool = False  # made under its plain name (external in a stack), not versioned

    @property
    def source(self) -> str:
        if self.env:
            return f"environment variable {self.env}"
        if self.file:
            return f"file {self.file}"
        return "stdin"


class BootstrapConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    state_dir: str
    periphery: PeripherySpec
    core: CoreSpec
    server: str = "manager"
    resources: list[str] = msgspec.field(default_factory=list)
    stacks: list[str] = msgspec.field(default_factory=list)
    stack_timeout: float = 900.0
    swarm: SwarmSpec = msgspec.field(default_factory=SwarmSpec)
    secret: list[SecretSpec] = msgspec.field(default_factory=list)
    networks: list[str] = msgspec.field(default_factory=list)
    # Where the config was read from (not a key of the file).
    source: str = ""


def load_bootstrap_config(path: str | os.PathLike[str]) -> BootstrapConfig:
    cfg, file = load_struct(path, BootstrapConfig)
    return _finish(cfg, file)


def _finish(cfg: BootstrapConfig, file: Path) -> BootstrapConfig:
    base = file.resolve().parent

    def rel(p: str) -> str:
        return str(base / os.path.expanduser(p)) if p and not os.path.isabs(p) else p

    def bad(key: str, problem: str) -> ConfigError:
        return ConfigError(f'{file}: key "{key}": {problem}')

    if not cfg.state_dir:
        raise bad("state_dir", "must not be empty")
    if not cfg.server:
        raise bad("server", "name the manager's [[server]] in the resources")
    if len(set(cfg.stacks)) != len(cfg.stacks):
        raise bad("stacks", "a stack is listed twice")
    for key, seconds in (
        ("stack_timeout", cfg.stack_timeout),
        ("periphery.start_timeout", cfg.periphery.start_timeout),
        ("core.start_timeout", cfg.core.start_timeout),
        ("core.sync_timeout", cfg.core.sync_timeout),
    ):
        if not 0 < seconds < 86400:
            raise bad(key, "seconds, more than 0 and less than a day")
    for key, value in (
        ("periphery.config", cfg.periphery.config),
        ("core.config", cfg.core.config),
    ):
        if not value:
            raise bad(key, "the path of its config file")
    names: set[str] = set()
    stdin = 0
    secrets = []
    for index, spec in enumerate(cfg.secret):
        key = f"secret[{index}]"
        if not valid_logical_name(spec.name):
            raise bad(
                f"{key}.name",
                f"{spec.name!r}: letters, digits, '_', '.' or '-', at most 55, starting with a"
                " letter or digit",
            )
        if spec.name in names:
            raise bad(f"{key}.name", f"{spec.name!r} is listed twice")
        names.add(spec.name)
        given = [s for s in (spec.env, spec.file, "stdin" if spec.stdin else "") if s]
        if len(given) != 1:
            raise bad(key, f"secret {spec.name!r}: give exactly one of env, file, stdin = true")
        stdin += spec.stdin
        secrets.append(msgspec.structs.replace(spec, file=rel(spec.file)))
    if stdin > 1:
        raise bad("secret", "only one secret can be read from stdin")
    for index, network in enumerate(cfg.networks):
        if not _NETWORK.fullmatch(network):
            raise bad(
                f"networks[{index}]",
                f"{network!r}: letters, digits, '_', '.', '-', starting with a letter or digit",
            )
    return msgspec.structs.replace(
        cfg,
        state_dir=rel(cfg.state_dir),
        resources=[rel(r) for r in cfg.resources],
        periphery=msgspec.structs.replace(cfg.periphery, config=rel(cfg.periphery.config)),
        core=msgspec.structs.replace(cfg.core, config=rel(cfg.core.config)),
        secret=secrets,
        source=str(file),
    )
