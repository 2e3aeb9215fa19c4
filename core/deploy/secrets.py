"""Swarm secrets that change: one immutable secret per value, named by its content.

Swarm secrets cannot be updated, so a value gets its own secret, ``NAME_<first 8 hex of the
value's sha256>``, labelled ``stackward.secret=NAME``. A stack refers to the logical name in its
compose file and takes the versioned name from an environment variable that every Swarm deploy
gets, ``<NAME in upper case, other characters as _>_SECRET``::

    secrets:
      db_password:
        external: true
        name: ${DB_PASSWORD_SECRET}

When a value changes: the new version is created, the stacks whose services use an older
version are redeployed (they then point at the new one), and an older version is removed once no
service uses it. The version a deploy gets is the one pinned by whoever knows the sources (the
bootstrap), else the newest (the swarm's version index) of those that exist.

Who knows the sources: the bootstrap (its ``[[secret]]`` list: environment, file, stdin) and
the core (``[swarm_secrets]`` in its config: a logical name → one of its ``[secrets]``). Both
create a missing version before deploying (``ensure_versions``) and remove old versions no
service uses (``remove_unused``).

This module decides (pure); ``list_managed``, ``ensure_versions``, ``remove_unused`` and
``secret_env`` are the thin I/O over a channel.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core.exceptions import SecretsUnavailable
from protocol.exceptions import ChannelError
from protocol.messages import (
    Command,
    SecretCreate,
    SecretInfo,
    SecretList,
    SecretListReport,
    SecretRemove,
)
from protocol.transport import CoreChannel

log = logging.getLogger(__name__)

LABEL = "stackward.secret"
"""The label every managed secret carries; its value is the logical name."""

HASH_CHARS = 8

_LOGICAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,54}")


def valid_logical_name(name: str) -> bool:
    """A logical name leaves room for ``_`` and the hash within Docker's 64 characters."""
    return bool(_LOGICAL.fullmatch(name))


def versioned_name(logical: str, value: bytes) -> str:
    return f"{logical}_{hashlib.sha256(value).hexdigest()[:HASH_CHARS]}"


def env_var(logical: str) -> str:
    """The variable a stack file interpolates for the versioned name (``db-pass``:
    ``DB_PASS_SECRET``)."""
    return re.sub(r"[^A-Z0-9_]", "_", logical.upper()) + "_SECRET"


def logical_of(info: SecretInfo) -> str:
    return info.labels.get(LABEL, "")


def current_versions(
    infos: Iterable[SecretInfo], pinned: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Logical name → the version deploys should use: the pinned one when it exists, else the
    newest."""
    pinned = pinned or {}
    names = {i.name for i in infos}
    out: dict[str, str] = {}
    newest: dict[str, int] = {}
    for info in infos:
        logical = logical_of(info)
        if not logical:
            continue
        if logical in pinned and pinned[logical] in names:
            out[logical] = pinned[logical]
        elif info.index >= newest.get(logical, -1):
            newest[logical] = info.index
            out[logical] = info.name
    return out


def deploy_env(current: Mapping[str, str]) -> dict[str, str]:
    """The environment that carries the versioned names to ``docker stack deploy``."""
    return {env_var(logical): name for logical, name in sorted(current.items())}


@dataclass(frozen=True)
class SecretPlan:
    """What to do about the managed secrets, given the wanted versions and what exists."""

    create: list[str] = field(default_factory=list)  # logical names whose version is missing
    stale: dict[str, list[str]] = field(default_factory=dict)  # stack → old versions it uses
    removable: list[str] = field(default_factory=list)  # old versions no service uses
    in_use: dict[str, list[str]] = field(default_factory=dict)  # old version → services

    @property
    def stale_stacks(self) -> list[str]:
        return sorted(self.stale)


def plan_secrets(wanted: Mapping[str, str], infos: Iterable[SecretInfo]) -> SecretPlan:
    """``wanted``: logical name → versioned name. Only versions of these logical names are
    considered; other secrets, managed or not, are left alone."""
    infos = list(infos)
    existing = {i.name for i in infos}
    create = sorted(logical for logical, name in wanted.items() if name not in existing)
    stale: dict[str, set[str]] = {}
    removable: list[str] = []
    in_use: dict[str, list[str]] = {}
    for info in infos:
        logical = logical_of(info)
        if logical not in wanted or info.name == wanted[logical]:
            continue
        if info.services:
            in_use[info.name] = list(info.services)
            for stack in info.stacks:
                stale.setdefault(stack, set()).add(info.name)
        else:
            removable.append(info.name)
    return SecretPlan(
        create=create,
        stale={s: sorted(v) for s, v in sorted(stale.items())},
        removable=sorted(removable),
        in_use=in_use,
    )


def wanted_versions(values: Mapping[str, bytes]) -> dict[str, str]:
    """Logical name → the version its value gets."""
    return {logical: versioned_name(logical, value) for logical, value in values.items()}


async def _ask(channel: CoreChannel, command: Command) -> object:
    try:
        result, output = await channel.request(command)
    except ChannelError as exc:
        raise SecretsUnavailable(str(exc)) from exc
    if result.error is not None:
        raise SecretsUnavailable(result.error.message)
    return result.value


async def list_managed(channel: CoreChannel) -> list[SecretInfo]:
    """The managed secrets on the channel's engine; ``SecretsUnavailable`` with the reason."""
    value = await _ask(channel, SecretList(label=LABEL))
    if not isinstance(value, SecretListReport):
        raise SecretsUnavailable("the periphery answered SecretList without a list")
    return list(value.secrets)


async def ensure_versions(
    channel: CoreChannel, values: Mapping[str, bytes]
) -> tuple[list[str], list[SecretInfo]]:
    """Create each value's version where it is missing: ``(created names, what exists now)``."""
    wanted = wanted_versions(values)
    infos = await list_managed(channel)
    plan = plan_secrets(wanted, infos)
    for logical in plan.create:
        await _ask(
            channel,
            SecretCreate(name=wanted[logical], data=values[logical], labels={LABEL: logical}),
        )
    created = [wanted[logical] for logical in plan.create]
    if created:
        infos = await list_managed(channel)
    return created, infos


async def remove_unused(channel: CoreChannel, wanted: Mapping[str, str]) -> SecretPlan:
    """Remove the old versions of ``wanted``'s logical names that no service uses; the plan
    (``removable``: what was removed, ``in_use``: what was kept)."""
    plan = plan_secrets(wanted, await list_managed(channel))
    for name in plan.removable:
        await _ask(channel, SecretRemove(name=name))
    return plan


async def secret_env(channel: CoreChannel, pinned: Mapping[str, str] | None) -> dict[str, str]:
    """The ``*_SECRET`` variables for a Swarm deploy on this channel's engine; empty (with a log
    line) when the periphery cannot say (an older agent, an engine in no swarm)."""
    try:
        infos = await list_managed(channel)
    except SecretsUnavailable as exc:
        log.debug("no managed secrets for the deploy: %s", exc)
        return {}
    return deploy_env(current_versions(infos, pinned))
