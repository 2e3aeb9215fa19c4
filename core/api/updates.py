"""Image updates on demand.

``POST /api/updates/check`` with ``{"stacks": [...], "skip_auto_update": false}``: check the named
stacks now (every one, ``auto_update_skip_services`` included: Komodo's ``CheckStackForUpdate``),
or, without ``stacks``, every stack with ``poll_for_updates`` or ``auto_update`` as Komodo's
``GlobalAutoUpdate`` does; the ``auto_update`` ones with newer images are redeployed unless
``skip_auto_update``. 200 with each stack's outcome (its services: image, the digests it runs,
the registry's, ``update_available``; ``run`` when a redeploy started); 404 for a stack that is
not applied; 409 when the core talks to no agent.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from core.api.http import body_as, error_response, json_response
from core.api.state import parts
from core.exceptions import CoreError


class CheckRequest(msgspec.Struct, forbid_unknown_fields=True):
    stacks: list[str] | None = None
    skip_auto_update: bool = False


async def check(request: web.Request) -> web.Response:
    core = parts(request)
    if core.updates is None:
        return error_response(409, "updates_off", "the core has no private_key: it asks no agent")
    body = await body_as(request, CheckRequest, '{"stacks": ["web"], "skip_auto_update": false}')
    try:
        results = await core.updates.check(
            body.stacks,
            skip_auto_update=body.skip_auto_update,
            automatic=body.stacks is None,
        )
    except CoreError as exc:
        return error_response(404, "stack_not_found", str(exc))
    return json_response({"stacks": [msgspec.to_builtins(r) for r in results]})


def routes(router: web.UrlDispatcher) -> None:
    router.add_post("/api/updates/check", check)
