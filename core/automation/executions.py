"""A procedure's executions, typed: Komodo's ``Execution`` (``{type, params}``) read into one
Struct per type that means something here, checked before anything runs. Pure.

The types and their params are Komodo's (``client/core/rs/src/api/execute/*.rs``), and so are
the defaults (``services = []``, ``stop_time`` unset, ``remove_orphans = false``). What each does
here is in :mod:`core.automation.steps`. ``Batch*`` types select by a pattern
(:mod:`core.automation.patterns`) and are expanded into one execution per match when their
stage starts, as Komodo's ``execute_procedure_stage`` does (``bin/core/src/helpers/procedure.rs``).

Types with no meaning here are read past, with a warning naming them: builds and actions
(stackward builds nothing and runs no scripts), and the executions of resources stackward does
not have (deployments, single containers, alerters, swarm objects...). A type Komodo does not
know is an error.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from core.exceptions import CoreError
from core.resources.models import Execution


class ExecutionError(CoreError):
    """An execution whose type is unknown or whose params do not fit its type."""


class _Step(msgspec.Struct, frozen=True, tag_field="type"):
    def describe(self) -> str:
        """``DeployStack web``: the type and what it acts on, for logs and events."""
        fields = [f for f in self.__struct_fields__ if f != "type"]
        target = next(
            (
                str(getattr(self, f))
                for f in ("stack", "sync", "repo", "procedure", "pattern")
                if f in fields and getattr(self, f)
            ),
            "",
        )
        tag = type(self).__struct_config__.tag
        return f"{tag} {target}".strip()


class DeployStack(_Step, frozen=True, tag="DeployStack"):
    stack: str
    services: list[str] = []
    stop_time: int | None = None


class DeployStackIfChanged(_Step, frozen=True, tag="DeployStackIfChanged"):
    stack: str
    stop_time: int | None = None


class BatchDeployStack(_Step, frozen=True, tag="BatchDeployStack"):
    pattern: str
    tags: list[str] = []


class BatchDeployStackIfChanged(_Step, frozen=True, tag="BatchDeployStackIfChanged"):
    pattern: str
    tags: list[str] = []


class RunSync(_Step, frozen=True, tag="RunSync"):
    sync: str
    resource_type: str | None = None
    resources: list[str] | None = None


class PullRepo(_Step, frozen=True, tag="PullRepo"):
    repo: str


class CloneRepo(_Step, frozen=True, tag="CloneRepo"):
    repo: str


class BatchPullRepo(_Step, frozen=True, tag="BatchPullRepo"):
    pattern: str
    tags: list[str] = []


class BatchCloneRepo(_Step, frozen=True, tag="BatchCloneRepo"):
    pattern: str
    tags: list[str] = []


class RunProcedure(_Step, frozen=True, tag="RunProcedure"):
    procedure: str


class BatchRunProcedure(_Step, frozen=True, tag="BatchRunProcedure"):
    pattern: str
    tags: list[str] = []


class Sleep(_Step, frozen=True, tag="Sleep"):
    duration_ms: int = 0


class StartStack(_Step, frozen=True, tag="StartStack"):
    stack: str
    services: list[str] = []


class RestartStack(_Step, frozen=True, tag="RestartStack"):
    stack: str
    services: list[str] = []


class PauseStack(_Step, frozen=True, tag="PauseStack"):
    stack: str
    services: list[str] = []


class UnpauseStack(_Step, frozen=True, tag="UnpauseStack"):
    stack: str
    services: list[str] = []


class StopStack(_Step, frozen=True, tag="StopStack"):
    stack: str
    stop_time: int | None = None
    services: list[str] = []


class PullStack(_Step, frozen=True, tag="PullStack"):
    stack: str
    services: list[str] = []


class BatchPullStack(_Step, frozen=True, tag="BatchPullStack"):
    pattern: str
    tags: list[str] = []


class DestroyStack(_Step, frozen=True, tag="DestroyStack"):
    stack: str
    services: list[str] = []
    remove_orphans: bool = False
    stop_time: int | None = None


class BatchDestroyStack(_Step, frozen=True, tag="BatchDestroyStack"):
    pattern: str
    tags: list[str] = []


class BackupCoreDatabase(_Step, frozen=True, tag="BackupCoreDatabase"):
    pass


class GlobalAutoUpdate(_Step, frozen=True, tag="GlobalAutoUpdate"):
    skip_auto_update: bool = False


class RotateAllServerKeys(_Step, frozen=True, tag="RotateAllServerKeys"):
    pass


class Nothing(_Step, frozen=True, tag="None"):
    """Komodo's ``Execution::None``: does nothing, succeeds."""


Step = (
    DeployStack
    | DeployStackIfChanged
    | BatchDeployStack
    | BatchDeployStackIfChanged
    | RunSync
    | PullRepo
    | CloneRepo
    | BatchPullRepo
    | BatchCloneRepo
    | RunProcedure
    | BatchRunProcedure
    | Sleep
    | StartStack
    | RestartStack
    | PauseStack
    | UnpauseStack
    | StopStack
    | PullStack
    | BatchPullStack
    | DestroyStack
    | BatchDestroyStack
    | BackupCoreDatabase
    | GlobalAutoUpdate
    | RotateAllServerKeys
    | Nothing
)

BATCH: Final = (
    BatchDeployStack,
    BatchDeployStackIfChanged,
    BatchPullRepo,
    BatchCloneRepo,
    BatchRunProcedure,
    BatchPullStack,
    BatchDestroyStack,
)

STACK_STEPS: Final = (
    DeployStack,
    DeployStackIfChanged,
    StartStack,
    RestartStack,
    PauseStack,
    UnpauseStack,
    StopStack,
    PullStack,
    DestroyStack,
)


class ReadPast(msgspec.Struct, frozen=True):
    """An execution of a Komodo type that means nothing here: skipped, with why."""

    type: str
    why: str

    def describe(self) -> str:
        return self.type


_BUILDS = "stackward builds nothing"
_ACTIONS = "stackward runs no actions (TypeScript scripts)"
_NO_DEPLOYMENTS = "stackward has no [[deployment]]s"
_NO_CONTAINERS = "stackward acts on stacks, not single containers, images, volumes or networks"
_NO_ALERTERS = "stackward has no alerters in procedures"
_NO_SWARM_OPS = "stackward manages swarm objects through stacks and its own secrets"

READ_PAST: Final[dict[str, str]] = {
    "RunBuild": _BUILDS,
    "BatchRunBuild": _BUILDS,
    "CancelBuild": _BUILDS,
    "BuildRepo": _BUILDS,
    "BatchBuildRepo": _BUILDS,
    "CancelRepoBuild": _BUILDS,
    "RunAction": _ACTIONS,
    "BatchRunAction": _ACTIONS,
    "CancelAction": _ACTIONS,
    "Deploy": _NO_DEPLOYMENTS,
    "BatchDeploy": _NO_DEPLOYMENTS,
    "PullDeployment": _NO_DEPLOYMENTS,
    "StartDeployment": _NO_DEPLOYMENTS,
    "RestartDeployment": _NO_DEPLOYMENTS,
    "PauseDeployment": _NO_DEPLOYMENTS,
    "UnpauseDeployment": _NO_DEPLOYMENTS,
    "StopDeployment": _NO_DEPLOYMENTS,
    "DestroyDeployment": _NO_DEPLOYMENTS,
    "BatchDestroyDeployment": _NO_DEPLOYMENTS,
    "StartContainer": _NO_CONTAINERS,
    "RestartContainer": _NO_CONTAINERS,
    "PauseContainer": _NO_CONTAINERS,
    "UnpauseContainer": _NO_CONTAINERS,
    "StopContainer": _NO_CONTAINERS,
    "DestroyContainer": _NO_CONTAINERS,
    "StartAllContainers": _NO_CONTAINERS,
    "RestartAllContainers": _NO_CONTAINERS,
    "PauseAllContainers": _NO_CONTAINERS,
    "UnpauseAllContainers": _NO_CONTAINERS,
    "StopAllContainers": _NO_CONTAINERS,
    "PruneContainers": _NO_CONTAINERS,
    "DeleteNetwork": _NO_CONTAINERS,
    "PruneNetworks": _NO_CONTAINERS,
    "DeleteImage": _NO_CONTAINERS,
    "PruneImages": _NO_CONTAINERS,
    "DeleteVolume": _NO_CONTAINERS,
    "PruneVolumes": _NO_CONTAINERS,
    "PruneDockerBuilders": _NO_CONTAINERS,
    "PruneBuildx": _NO_CONTAINERS,
    "PruneSystem": _NO_CONTAINERS,
    "RunStackService": "stackward runs no one-off service commands",
    "CancelProcedure": "stackward cancels no procedure from a procedure",
    "CommitSync": "stackward never writes the resource files back to git",
    "ClearRepoCache": "stackward keeps no repo cache to clear",
    "RotateCoreKeys": "rotate the core's key with stackward keys and the agents' core_public_keys",
    "TestAlerter": _NO_ALERTERS,
    "SendAlert": _NO_ALERTERS,
    "RemoveSwarmNodes": _NO_SWARM_OPS,
    "UpdateSwarmNode": _NO_SWARM_OPS,
    "RemoveSwarmStacks": _NO_SWARM_OPS,
    "RemoveSwarmServices": _NO_SWARM_OPS,
    "CreateSwarmConfig": _NO_SWARM_OPS,
    "RotateSwarmConfig": _NO_SWARM_OPS,
    "RemoveSwarmConfigs": _NO_SWARM_OPS,
    "CreateSwarmSecret": _NO_SWARM_OPS,
    "RotateSwarmSecret": _NO_SWARM_OPS,
    "RemoveSwarmSecrets": _NO_SWARM_OPS,
}

_BY_TAG: Final[dict[str, type[Any]]] = {cls.__struct_config__.tag: cls for cls in Step.__args__}

KNOWN_TYPES: Final = tuple(sorted({*_BY_TAG, *READ_PAST}))


def parse(execution: Execution) -> Step | ReadPast:
    """The typed execution. Raises :class:`ExecutionError` for an unknown type or params that
    do not fit (a missing ``stack``, a number where a name goes...)."""
    kind = execution.type
    if kind in READ_PAST:
        return ReadPast(kind, READ_PAST[kind])
    cls = _BY_TAG.get(kind)
    if cls is None:
        raise ExecutionError(f"{kind!r} is not an execution type Komodo knows")
    params = execution.params if isinstance(execution.params, dict) else {}
    try:
        step: Step = msgspec.convert({**params, "type": kind}, cls)
    except msgspec.ValidationError as exc:
        raise ExecutionError(f"{kind}: params: {_validation(exc)}") from exc
    if isinstance(step, Sleep) and step.duration_ms < 0:
        raise ExecutionError("Sleep: params: duration_ms must not be negative")
    return step


def _validation(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    message, sep, where = text.rpartition(" - at `")
    if sep:
        key = where.rstrip("`").removeprefix("$.")
        return f"{key}: {message[0].lower()}{message[1:]}"
    if text.startswith("Object missing required field"):
        return f"{text.split('`')[1]} is required"
    return text
