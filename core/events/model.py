"""What an event is: a monotonic id, a time, a kind, the resource, and a typed payload.

Kinds (``Kind``) are dotted; a filter ``deploy`` matches ``deploy.started``, ``deploy.output``
and the rest of that family. The resource is ``TYPE:NAME`` (``stack:web``, ``server:nas``,
``sync:homelab``, ``repo:infra``) or empty for the core itself.

Each kind has a payload Struct below; the wire (JSON or msgpack) carries it under ``data``::

    {"id": 42, "time": 1795000000.25, "kind": "deploy.finished", "resource": "stack:web",
     "data": {"run": 3, "deploy": 7, "stack": "web", "status": "healthy", ...}}

An :class:`Event` encodes itself once per format and keeps the bytes, so a hundred subscribers
cost one encoding. Payloads must already be free of secrets: producers mask before publishing.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class Kind(enum.StrEnum):
    CORE_STARTED = "core.started"
    RESOURCES_LOADED = "resources.loaded"
    WEBHOOK_ACCEPTED = "webhook.accepted"
    CHANGE_DETECTED = "change.detected"
    PLAN_MADE = "plan.made"
    RESOURCE_APPLIED = "resource.applied"
    DEPLOY_STARTED = "deploy.started"
    DEPLOY_STEP = "deploy.step"
    DEPLOY_OUTPUT = "deploy.output"
    DEPLOY_FINISHED = "deploy.finished"
    HEALTH_CHANGED = "health.changed"
    DOCKER = "docker.event"
    DOCKER_ENGINE = "docker.engine"
    DRIFT = "drift"
    PERIPHERY_CONNECTED = "periphery.connected"
    PERIPHERY_LOST = "periphery.lost"
    INTENT_RECORDED = "intent.recorded"
    PROCEDURE_STARTED = "procedure.started"
    PROCEDURE_STAGE = "procedure.stage"
    PROCEDURE_STEP = "procedure.step"
    PROCEDURE_OUTPUT = "procedure.output"
    PROCEDURE_FINISHED = "procedure.finished"
    SCHEDULE_FIRED = "schedule.fired"
    SCHEDULE_MISSED = "schedule.missed"
    SCHEDULE_INVALID = "schedule.invalid"
    BACKUP_MADE = "backup.made"
    KEY_ROTATED = "key.rotated"


# ------------------------------------------------------------------------------- payloads


class CoreStarted(msgspec.Struct, frozen=True):
    version: str
    listen: str
    last_event: int  # the last id before this start (resume from here after a restart)


class ResourcesLoaded(msgspec.Struct, frozen=True):
    source: str  # "local" or a sync's name
    files: int
    resources: int
    errors: int
    warnings: int
    commit: str = ""


class WebhookAccepted(msgspec.Struct, frozen=True):
    forge: str
    target: str  # "stack" | "sync" | "repo"
    name: str
    action: str
    event: str  # "push" | "ping" | ...
    delivery: str = ""
    branch: str = ""
    commit: str = ""
    outcome: str = ""  # what follows: "sync", "deploy", "pull", "ignored: ...", "duplicate"


class ChangeDetected(msgspec.Struct, frozen=True):
    source: str  # "webhook" | "poll"
    sync: str
    commit: str
    previous: str = ""
    fetch_ms: float = 0.0  # the git fetch alone


class PlanMade(msgspec.Struct, frozen=True):
    plan: str
    sync: str
    commit: str
    counts: dict[str, int]
    deploys: list[str]


class ResourceApplied(msgspec.Struct, frozen=True):
    plan: str
    sync: str
    type: str
    name: str
    action: str  # create | update | delete


class DeployStarted(msgspec.Struct, frozen=True):
    run: int
    deploy: int
    stack: str
    server: str
    commit: str
    trigger: str


class DeployStep(msgspec.Struct, frozen=True):
    deploy: int
    stack: str
    step: str
    state: str  # "started" | "ok" | "failed"
    message: str = ""
    seconds: float = 0.0


class DeployOutput(msgspec.Struct, frozen=True):
    deploy: int
    stack: str
    step: str
    stream: str  # "stdout" | "stderr"
    seq: int
    text: str


class DeployFinished(msgspec.Struct, frozen=True):
    run: int
    deploy: int
    stack: str
    status: str  # healthy | failed | skipped | interrupted
    message: str
    seconds: float
    step: str = ""  # the step that failed
    tail: str = ""  # a failure's last output lines (masked)


class HealthChanged(msgspec.Struct, frozen=True):
    stack: str
    healthy: bool
    previous: bool | None
    detail: str = ""


class DockerEventData(msgspec.Struct, frozen=True):
    server: str
    type: str  # container | service | node
    action: str
    actor: str
    name: str = ""
    stack: str = ""  # the stack it belongs to, when we know one
    service: str = ""
    detail: dict[str, str] = {}


class DockerEngine(msgspec.Struct, frozen=True):
    server: str
    state: str  # "lost" | "resumed"
    message: str = ""


class Drift(msgspec.Struct, frozen=True):
    stack: str
    reason: str  # removed | changed | dead | unhealthy
    detail: str
    services: list[str]
    action: str  # alert | redeploy | ignore | flap_limit
    run: int | None = None


class PeripheryConnected(msgspec.Struct, frozen=True):
    server: str
    key: str  # its key's fingerprint
    address: str = ""


class PeripheryLost(msgspec.Struct, frozen=True):
    server: str
    reason: str


class IntentRecorded(msgspec.Struct, frozen=True):
    """A trigger for some stacks, recorded; ``runs`` names the run that carries each stack."""

    intent: int
    source: str  # api | apply | webhook | poll | drift | secrets | startup | reconcile
    reason: str
    stacks: list[str]
    runs: dict[str, int]


class ProcedureStarted(msgspec.Struct, frozen=True):
    run: int
    procedure: str
    source: str  # api | schedule | webhook | procedure
    reason: str
    stages: list[str]
    parent: int | None = None  # the run of the procedure whose RunProcedure started it


class ProcedureStage(msgspec.Struct, frozen=True):
    run: int
    procedure: str
    stage: int
    name: str
    state: str  # started | ok | failed
    message: str = ""
    seconds: float = 0.0


class ProcedureStep(msgspec.Struct, frozen=True):
    run: int
    procedure: str
    seq: int
    stage: int
    execution: str  # "DeployStack web"
    state: str  # started | ok | failed | skipped
    message: str = ""
    seconds: float = 0.0


class ProcedureOutput(msgspec.Struct, frozen=True):
    run: int
    procedure: str
    seq: int
    text: str


class ProcedureFinished(msgspec.Struct, frozen=True):
    run: int
    procedure: str
    status: str  # succeeded | failed | cancelled | interrupted
    message: str
    seconds: float


class ScheduleFired(msgspec.Struct, frozen=True):
    procedure: str
    due: float  # the time it was due (UNIX seconds)
    late: float  # seconds after that it fired
    outcome: str  # started | busy: ... | failed: ...
    run: int | None = None


class ScheduleMissed(msgspec.Struct, frozen=True):
    """Times that passed while the core was down: reported, not run late."""

    procedure: str
    schedule: str
    count: int  # at most the cap; more when ``more``
    first: float
    last: float
    more: bool = False


class ScheduleInvalid(msgspec.Struct, frozen=True):
    procedure: str
    schedule: str
    error: str


class BackupMade(msgspec.Struct, frozen=True):
    path: str
    bytes: int
    seconds: float
    removed: list[str]  # older backups removed by the retention count


class KeyRotated(msgspec.Struct, frozen=True):
    server: str
    old: str  # fingerprints
    new: str
    state: str  # pending | confirmed | failed | skipped
    message: str = ""


Payload = (
    CoreStarted
    | ResourcesLoaded
    | WebhookAccepted
    | ChangeDetected
    | PlanMade
    | ResourceApplied
    | DeployStarted
    | DeployStep
    | DeployOutput
    | DeployFinished
    | HealthChanged
    | DockerEventData
    | DockerEngine
    | Drift
    | PeripheryConnected
    | PeripheryLost
    | IntentRecorded
    | ProcedureStarted
    | ProcedureStage
    | ProcedureStep
    | ProcedureOutput
    | ProcedureFinished
    | ScheduleFired
    | ScheduleMissed
    | ScheduleInvalid
    | BackupMade
    | KeyRotated
)

# ---------------------------------------------------------------------------------- event

_mp = msgspec.msgpack.Encoder()
_js = msgspec.json.Encoder()


class WireEvent(msgspec.Struct, frozen=True):
    """The event as subscribers and the store see it; ``data`` is already encoded."""

    id: int
    time: float
    kind: str
    resource: str
    data: msgspec.Raw


class Event:
    """One event, with its encodings made on first use and kept."""

    __slots__ = ("id", "time", "kind", "resource", "data_mp", "_data_js", "_mp", "_js")

    def __init__(self, id: int, time: float, kind: str, resource: str, data_mp: bytes) -> None:
        self.id = id
        self.time = time
        self.kind = kind
        self.resource = resource
        self.data_mp = data_mp  # the payload, msgpack (what the store keeps)
        self._data_js: bytes | None = None
        self._mp: bytes | None = None
        self._js: bytes | None = None

    @classmethod
    def of(cls, id: int, time: float, kind: str, resource: str, payload: Any) -> Event:
        return cls(id, time, kind, resource, _mp.encode(payload))

    def data(self) -> dict[str, Any]:
        value: dict[str, Any] = msgspec.msgpack.decode(self.data_mp)
        return value

    def msgpack(self) -> bytes:
        if self._mp is None:
            self._mp = _mp.encode(
                WireEvent(self.id, self.time, self.kind, self.resource, msgspec.Raw(self.data_mp))
            )
        return self._mp

    def json(self) -> bytes:
        if self._js is None:
            if self._data_js is None:
                self._data_js = _js.encode(msgspec.msgpack.decode(self.data_mp))
            self._js = _js.encode(
                WireEvent(self.id, self.time, self.kind, self.resource, msgspec.Raw(self._data_js))
            )
        return self._js

    def __repr__(self) -> str:
        return f"Event({self.id}, {self.kind!r}, {self.resource!r})"


class Filter(msgspec.Struct, frozen=True):
    """Which events a subscriber wants: kinds (a family name matches its members) and
    resources (``stack:web``; an empty tuple means all)."""

    kinds: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()

    def matches(self, kind: str, resource: str) -> bool:
        if self.resources and resource not in self.resources:
            return False
        if not self.kinds:
            return True
        for k in self.kinds:
            if kind == k or (kind.startswith(k) and kind[len(k)] == "."):
                return True
        return False
