"""The image update check (signature first; the body lands with the rest of core/updates)."""

from __future__ import annotations

from collections.abc import Collection

import msgspec


class ServiceUpdate(msgspec.Struct, frozen=True):
    """One service of a stack: the image it runs, the digest(s) of what runs, the registry's
    digest of its tag now, and whether that is newer."""

    service: str
    image: str
    current: list[str] = []  # sha256:... of what runs
    latest: str = ""  # sha256:... the registry has for the tag ("" : not known)
    update_available: bool = False
    error: str = ""


class StackCheck(msgspec.Struct, frozen=True):
    stack: str
    services: list[ServiceUpdate] = []
    error: str = ""  # the stack could not be checked at all
    run: int | None = None  # auto_update: the run that redeploys it


class UpdateChecker:
    async def check(
        self,
        stacks: Collection[str] | None = None,
        *,
        skip_auto_update: bool = False,
        automatic: bool = True,
    ) -> list[StackCheck]:
        """Check ``stacks`` (default: every applied stack with ``poll_for_updates`` or
        ``auto_update``); redeploy those with ``auto_update`` unless ``skip_auto_update``.
        ``automatic``: the interval or GlobalAutoUpdate (``auto_update_skip_services`` apply)."""
        raise NotImplementedError


async def check_updates(
    checker: UpdateChecker, *, skip_auto_update: bool = False
) -> list[StackCheck]:
    """Komodo's ``GlobalAutoUpdate`` execution: check every stack with ``poll_for_updates`` or
    ``auto_update``, and redeploy the ``auto_update`` ones that have newer images (unless
    ``skip_auto_update``). Returns each stack's check; never raises for one stack's failure
    (it is in that stack's ``error``)."""
    return await checker.check(skip_auto_update=skip_auto_update, automatic=True)
