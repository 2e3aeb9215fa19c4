"""The bootstrap's host commands: swarm init and swarm secrets. Each wraps an operation of
``periphery.ops`` (``swarm_init``, ``secrets``), streams its output and types its errors."""

from __future__ import annotations

from periphery.exceptions import PeripheryError
from periphery.handlers.deploy import emitter, failure
from periphery.ops import secrets, swarm_init
from protocol.messages import (
    SecretCreate,
    SecretInfo,
    SecretList,
    SecretListReport,
    SecretRemove,
    SecretReport,
    SwarmInit,
    SwarmReport,
)
from protocol.transport import Outcome, OutputWriter

HostCommand = SwarmInit | SecretList | SecretCreate | SecretRemove


async def handle(command: HostCommand, out: OutputWriter) -> Outcome:
    emit = emitter(out)
    try:
        match command:
            case SwarmInit():
                state, changed = await swarm_init.ensure_swarm(command.advertise_addr, emit)
                value: SwarmReport | SecretListReport | SecretReport = SwarmReport(
                    state=state.local_state,
                    changed=changed,
                    node_id=state.node_id,
                    manager=state.control_available,
                )
            case SecretList():
                found = await secrets.list_secrets(command.label)
                value = SecretListReport(
                    secrets=[
                        SecretInfo(
                            name=s.name,
                            id=s.id,
                            labels=s.labels,
                            index=s.index,
                            services=s.services,
                            stacks=s.stacks,
                        )
                        for s in found
                    ]
                )
            case SecretCreate():
                created = await secrets.create_secret(
                    command.name, command.data, command.labels, emit
                )
                value = SecretReport(name=command.name, changed=created)
            case SecretRemove():
                removed = await secrets.remove_secret(command.name, emit)
                value = SecretReport(name=command.name, changed=removed)
    except PeripheryError as exc:
        return failure(exc)
    return Outcome(exit_code=0, value=value)
