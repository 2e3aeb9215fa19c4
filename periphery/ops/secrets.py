"""Swarm secrets: list the ones stackward manages (and who uses them), create, remove.

A value is handed to ``docker secret create NAME -`` on stdin and goes nowhere else: not into
argv, the output, the logs or an error message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiodocker

from periphery.exceptions import CommandFailed, CommandTimeout, SecretError
from periphery.process import Emit, base_env, capture, note, shown

log = logging.getLogger(__name__)

SECRET_TIMEOUT = 60.0
STACK_LABEL = "com.docker.stack.namespace"

# Docker's rule for secret names (and a label key that cannot pass for an option).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class Secret:
    name: str
    id: str
    labels: dict[str, str]
    index: int
    services: list[str] = field(default_factory=list)
    stacks: list[str] = field(default_factory=list)


def secret_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise SecretError(
            f"secret name {name!r}: letters, digits, '_', '.' or '-', at most 64, starting with"
            " a letter or digit"
        )
    return name


def label_args(labels: Mapping[str, str]) -> list[str]:
    out = []
    for key, value in sorted(labels.items()):
        if not _LABEL_KEY.fullmatch(key):
            raise SecretError(f"label {key!r}: letters, digits, '_', '.' or '-'")
        out.append(f"--label={key}={value}")
    return out


def users(services: list[Mapping[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """Secret name → ``(service, stack)`` of every service whose spec refers to it."""
    out: dict[str, list[tuple[str, str]]] = {}
    for service in services:
        spec = service.get("Spec", {})
        name = str(spec.get("Name", ""))
        stack = str((spec.get("Labels") or {}).get(STACK_LABEL, ""))
        container = spec.get("TaskTemplate", {}).get("ContainerSpec", {})
        for ref in container.get("Secrets") or []:
            out.setdefault(str(ref.get("SecretName", "")), []).append((name, stack))
    return out


async def list_secrets(label: str) -> list[Secret]:
    """The secrets carrying ``label`` (any value), oldest first, with their users."""
    try:
        async with aiodocker.Docker() as docker:
            found = await docker.secrets.list(filters={"label": label})
            services = await docker.services.list()
    except Exception as exc:  # aiodocker and aiohttp raise many kinds
        raise SecretError(f"cannot list swarm secrets: {exc}") from exc
    used = users(services)
    out = []
    for item in found:
        spec = item.get("Spec", {})
        name = str(spec.get("Name", ""))
        refs = used.get(name, [])
        out.append(
            Secret(
                name=name,
                id=str(item.get("ID", "")),
                labels={str(k): str(v) for k, v in (spec.get("Labels") or {}).items()},
                index=int((item.get("Version") or {}).get("Index", 0)),
                services=sorted({s for s, _ in refs}),
                stacks=sorted({st for _, st in refs if st}),
            )
        )
    return sorted(out, key=lambda s: (s.index, s.name))


async def _exists(name: str) -> bool:
    try:
        async with aiodocker.Docker() as docker:
            found = await docker.secrets.list(filters={"name": name})
    except Exception as exc:
        raise SecretError(f"cannot list swarm secrets: {exc}") from exc
    return any(item.get("Spec", {}).get("Name") == name for item in found)


async def _docker(argv: list[str], emit: Emit, stdin: bytes | None = None) -> None:
    await note(emit, f"$ {shown(argv)}")
    try:
        done = await capture(argv, time_limit=SECRET_TIMEOUT, env=base_env(), stdin=stdin)
    except CommandTimeout as exc:
        raise SecretError(f"{shown(argv)} took longer than {SECRET_TIMEOUT:g}s") from exc
    except CommandFailed as exc:
        raise SecretError(f"cannot start docker: {exc}") from exc
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        raise SecretError(f"{shown(argv)}: {reason}")


async def create_secret(name: str, data: bytes, labels: Mapping[str, str], emit: Emit) -> bool:
    """Create the secret unless one of that name exists; True when created."""
    secret_name(name)
    args = label_args(labels)
    if not data:
        raise SecretError(f"secret {name!r}: the value is empty")
    if await _exists(name):
        await note(emit, f"secret {name} exists already")
        return False
    await _docker(["docker", "secret", "create", *args, name, "-"], emit, stdin=data)
    await note(emit, f"secret {name} created")
    log.info("swarm secret %s created", name)
    return True


async def remove_secret(name: str, emit: Emit) -> bool:
    """Remove the secret if it exists; True when removed. Fails while a service uses it."""
    secret_name(name)
    if not await _exists(name):
        await note(emit, f"secret {name} does not exist")
        return False
    await _docker(["docker", "secret", "rm", name], emit)
    await note(emit, f"secret {name} removed")
    log.info("swarm secret %s removed", name)
    return True
