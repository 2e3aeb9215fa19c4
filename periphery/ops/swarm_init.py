"""``docker swarm init`` when this engine is in no swarm: the bootstrap's first host step.

What to do is decided by :func:`decide` from the engine's ``Swarm.LocalNodeState`` and
``ControlAvailable`` alone (pure, tested without an engine); the I/O around it reads them with
``docker info`` and runs ``docker swarm init``.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from dataclasses import dataclass

from periphery.exceptions import CommandFailed, SwarmStateError
from periphery.process import Emit, base_env, capture, note, run, shown

log = logging.getLogger(__name__)

INFO_TIMEOUT = 30.0
INIT_TIMEOUT = 120.0

# An address or an interface name (docker accepts both), never something argv could mistake
# for an option.
_ADDRESS = re.compile(r"[A-Za-z0-9_\[][A-Za-z0-9_.:%\[\]-]{0,127}")


class Action(enum.Enum):
    INIT = "init"
    NOTHING = "nothing"


@dataclass(frozen=True)
class SwarmState:
    local_state: str  # "inactive", "pending", "active", "error", "locked"
    control_available: bool  # a manager
    node_id: str = ""


def decide(state: SwarmState) -> Action:
    """``INIT`` when in no swarm, ``NOTHING`` on a manager; raises ``SwarmStateError`` for a
    worker or a swarm in an unclear state (what to do is in the message)."""
    match state.local_state:
        case "inactive":
            return Action.INIT
        case "active" if state.control_available:
            return Action.NOTHING
        case "active":
            raise SwarmStateError(
                "this engine is a swarm worker: run the bootstrap on a manager (docker node ls)"
            )
        case "locked":
            raise SwarmStateError("the swarm is locked: docker swarm unlock, then run it again")
        case other:
            raise SwarmStateError(
                f"the engine's swarm state is {other or 'unknown'!r}: see docker info; leave or"
                " repair the swarm, then run it again"
            )


def check_address(address: str) -> str:
    if address and not _ADDRESS.fullmatch(address):
        raise SwarmStateError(f"advertise address {address!r} is not an address or interface")
    return address


async def swarm_state() -> SwarmState:
    """The engine's swarm state, from ``docker info``."""
    argv = ["docker", "info", "--format", "{{json .Swarm}}"]
    try:
        done = await capture(argv, time_limit=INFO_TIMEOUT, env=base_env())
    except CommandFailed as exc:
        raise SwarmStateError(f"cannot ask the Docker engine: {exc}") from exc
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        raise SwarmStateError(f"docker info failed: {reason}")
    try:
        swarm = json.loads(done.stdout)
    except ValueError as exc:
        raise SwarmStateError(f"docker info gave no swarm state: {exc}") from exc
    return SwarmState(
        local_state=str(swarm.get("LocalNodeState", "")),
        control_available=bool(swarm.get("ControlAvailable", False)),
        node_id=str(swarm.get("NodeID", "")),
    )


async def ensure_swarm(advertise_addr: str, emit: Emit) -> tuple[SwarmState, bool]:
    """Make this engine a swarm manager if it is in no swarm; ``(state, changed)``."""
    check_address(advertise_addr)
    state = await swarm_state()
    if decide(state) is Action.NOTHING:
        await note(emit, f"this engine is a swarm manager already (node {state.node_id})")
        return state, False
    argv = ["docker", "swarm", "init"]
    if advertise_addr:
        argv += ["--advertise-addr", advertise_addr]
    await note(emit, f"$ {shown(argv)}")
    try:
        done = await run(argv, emit=emit, time_limit=INIT_TIMEOUT, env=base_env())
    except CommandFailed as exc:
        raise SwarmStateError(str(exc)) from exc
    if done.returncode != 0:
        raise SwarmStateError(done.summary("docker swarm init"))
    state = await swarm_state()
    if decide(state) is not Action.NOTHING:
        raise SwarmStateError(f"after docker swarm init the swarm is {state.local_state!r}")
    log.info("swarm initialised: node %s", state.node_id)
    return state, True
