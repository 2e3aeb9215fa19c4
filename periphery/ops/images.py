"""``ImageDigests``: the image each service of a stack runs, and the digests of what runs.

What Komodo's core compares with the registry's digest of the tag (``monitor/resources.rs``):

- **Compose**: each container of the project (``com.docker.compose.project``) by its service
  label; the image it was started from is ``Config.Image`` (the reference as the compose file
  gives it, interpolated), and what runs is its image (``Image``, an id) whose ``RepoDigests``
  are the digests (``repo@sha256:…``). When the tag has moved since (a newer image pulled), the
  container still runs the old image, with the old digests.
- **Swarm**: each service of the stack (``com.docker.stack.namespace``); the stack file's
  reference is the ``com.docker.stack.image`` label, and the spec's image pins the digest the
  engine resolved at deploy time (``name:tag@sha256:…``).

:func:`compose_service_images` and :func:`swarm_service_images` are pure (inspect objects in,
``ServiceImage`` out); :func:`image_digests` asks the engine (aiodocker, with a deadline).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiodocker
import anyio

from protocol.messages import DeployMode, ImageDigestsReport, ServiceImage

API_TIMEOUT = 30.0
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
STACK_LABEL = "com.docker.stack.namespace"
STACK_IMAGE_LABEL = "com.docker.stack.image"

Obj = Mapping[str, Any]


def without_digest(image: str) -> str:
    """``name:tag@sha256:…`` → ``name:tag``."""
    return image.split("@", 1)[0]


def compose_service_images(
    containers: Sequence[Obj], images: Mapping[str, Obj]
) -> list[ServiceImage]:
    """``containers``: inspect objects of one project's containers; ``images``: inspect objects
    by image id. One entry per service (the digests of all its containers, in order)."""
    refs: dict[str, str] = {}
    digests: dict[str, list[str]] = {}
    for c in containers:
        config: Obj = c.get("Config") or {}
        labels: Obj = config.get("Labels") or {}
        if labels.get(ONEOFF_LABEL) == "True":
            continue  # compose run: not a service's container
        service = str(labels.get(SERVICE_LABEL) or "")
        if not service:
            continue
        refs.setdefault(service, str(config.get("Image") or ""))
        found = digests.setdefault(service, [])
        image: Obj = images.get(str(c.get("Image") or "")) or {}
        for d in image.get("RepoDigests") or []:
            if isinstance(d, str) and d not in found:
                found.append(d)
    return [ServiceImage(s, refs[s], digests[s]) for s in sorted(refs)]


def swarm_service_images(stack: str, services: Sequence[Obj]) -> list[ServiceImage]:
    """``services``: the stack's service objects (``docker service inspect``)."""
    out = []
    for s in services:
        spec: Obj = s.get("Spec") or {}
        name = str(spec.get("Name") or "")
        short = name[len(stack) + 1 :] if name.startswith(stack + "_") else name
        pinned = str(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", ""))
        labels: Obj = spec.get("Labels") or {}
        ref = str(labels.get(STACK_IMAGE_LABEL) or without_digest(pinned))
        out.append(ServiceImage(short, ref, [pinned] if "@" in pinned else []))
    return sorted(out, key=lambda i: i.service)


async def _compose(docker: aiodocker.Docker, project: str) -> ImageDigestsReport:
    filters = json.dumps({"label": [f"{PROJECT_LABEL}={project}"]})
    listed = await docker.containers.list(all=True, filters=filters)
    if not listed:
        return ImageDigestsReport(exists=False)
    containers: list[dict[str, Any]] = []
    for container in listed:
        try:
            containers.append(await container.show())
        except aiodocker.DockerError as exc:
            if exc.status != 404:  # 404: removed between list and inspect
                raise
    images: dict[str, dict[str, Any]] = {}
    for c in containers:
        image_id = str(c.get("Image") or "")
        if image_id and image_id not in images:
            try:
                images[image_id] = await docker.images.inspect(image_id)
            except aiodocker.DockerError as exc:
                if exc.status != 404:  # removed since: no digests known
                    raise
    return ImageDigestsReport(services=compose_service_images(containers, images))


async def _swarm(docker: aiodocker.Docker, stack: str) -> ImageDigestsReport:
    services = await docker.services.list(filters={"label": f"{STACK_LABEL}={stack}"})
    if not services:
        return ImageDigestsReport(exists=False)
    return ImageDigestsReport(services=swarm_service_images(stack, services))


async def image_digests(
    mode: DeployMode, name: str, *, time_limit: float = API_TIMEOUT
) -> ImageDigestsReport:
    """Raises ``TimeoutError`` past ``time_limit``, ``aiodocker.DockerError`` for the API's."""
    with anyio.fail_after(time_limit):
        async with aiodocker.Docker() as docker:
            if mode is DeployMode.SWARM:
                return await _swarm(docker, name)
            return await _compose(docker, name)
