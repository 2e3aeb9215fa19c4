"""An image update's deploy (Komodo's ``auto_update``): what the reconciler changes in a
stack's job when an intent asks for newer images. Pure.

Komodo deploys the services with newer images only, unless ``auto_update_all_services``
(``api/write/stack.rs``, ``check_stack_for_update_inner``: ``DeployStack { services }``), and
pulls first (its ``auto_pull``, true by default). Here the pull is forced (an update that pulls
nothing deploys nothing new), and some services only when the rest of the stack already runs
what is desired: the stack's last finished deploy was healthy, at the spec and commit being
deployed. Otherwise the update deploys the whole stack (a healthy deploy recorded at the
desired spec must mean that all of the stack runs it).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from core.deploy.deployer import Prepared

LastFinished = tuple[str, str, str] | None
"""The stack's newest finished deploy: ``(status, spec, commit)``."""


def runs_desired(last: LastFinished, prepared: Prepared) -> bool:
    """The stack's last finished deploy was healthy, at the spec and commit of ``prepared``."""
    if last is None:
        return False
    status, spec, commit = last
    return (
        status == "healthy"
        and bool(spec)
        and (spec, commit)
        == (
            prepared.spec,
            prepared.job.commit,
        )
    )


def update_job(prepared: Prepared, services: Collection[str], last: LastFinished) -> Prepared:
    """``prepared`` pulling first, bringing up only ``services`` when that is safe (else all)."""
    only = tuple(sorted(services)) if services and runs_desired(last, prepared) else ()
    return replace(prepared, job=replace(prepared.job, pull=True, services=only))
