"""External overlay networks the core may make (its ``external_networks``): before a deploy,
each network a stack's file declares ``external`` that the core lists and the engine lacks is
made, under its plain name, as an attachable overlay (so Compose containers can join it too).
A network the core does not list is never made: a missing one stays Docker's error."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import aiodocker

from periphery.exceptions import StackDeployFailed
from periphery.process import Emit, base_env, note, run, shown

log = logging.getLogger(__name__)

NETWORK_TIMEOUT = 60.0


def external_networks(documents: Iterable[tuple[str, object]]) -> list[str]:
    """The names of the networks the compose documents declare external, in order: the
    ``name`` given (``external: {name: x}`` included), else the key."""
    names: list[str] = []
    for _, doc in documents:
        declared = doc.get("networks") if isinstance(doc, dict) else None
        if not isinstance(declared, dict):
            continue
        for key, spec in declared.items():
            if not isinstance(spec, dict):
                continue
            external = spec.get("external")
            if external is True or isinstance(external, dict):
                name = external.get("name") if isinstance(external, dict) else None
                names.append(str(name or spec.get("name") or key))
    return list(dict.fromkeys(names))


def create_argv(name: str) -> list[str]:
    return ["docker", "network", "create", "--driver", "overlay", "--attachable", "--", name]


async def _exists(name: str) -> bool:
    try:
        async with aiodocker.Docker() as docker:
            found = await docker.networks.list(filters={"name": name})
    except Exception as exc:  # aiodocker and aiohttp raise many kinds
        raise StackDeployFailed(f"cannot list networks: {exc}") from exc
    return any(n.get("Name") == name for n in found)


async def ensure_networks(
    allowed: Sequence[str], documents: Iterable[tuple[str, object]], emit: Emit
) -> list[str]:
    """Make the external networks of ``documents`` that ``allowed`` lists and the engine lacks;
    return the ones made."""
    made = []
    for name in external_networks(documents):
        if name not in allowed or await _exists(name):
            continue
        argv = create_argv(name)
        await note(emit, f"$ {shown(argv)}")
        done = await run(argv, emit=emit, time_limit=NETWORK_TIMEOUT, env=base_env())
        if done.returncode != 0 and not await _exists(name):  # another deploy may have won
            raise StackDeployFailed(done.summary(f"creating network {name}"))
        log.info("network %s created", name)
        made.append(name)
    return made
