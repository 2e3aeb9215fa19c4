"""Typed resource models and findings.

Every resource is a :class:`Resource` (the entry: name, description, tags, and for stacks
``deploy``, ``after``, ``tier``, ``on_drift``) holding a typed ``config`` Struct of its kind. The
loader checks types itself (to report every fault with its line), then builds the Structs with
``msgspec.convert``, which is fast. Names are Komodo's; aliases are folded to one spelling
(``server``, ``swarm``, ``servers``, ``builder``, ``stages``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgspec

from core.exceptions import ResourceError
from core.resources.linemap import LineMap

Severity = Literal["error", "warning"]


class Finding(msgspec.Struct, frozen=True, order=True):
    """One problem found in a resource file: where, how bad, what, and what to do."""

    file: str
    line: int
    severity: Severity
    message: str
    code: str = "invalid"
    key: str = ""  # for code "inert": the field's key in core.resources.support

    def format(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"

    def as_error(self) -> Finding:
        return msgspec.structs.replace(self, severity="error")


class SourceRef(msgspec.Struct, frozen=True):
    """Where an entry is written: the file and its key path there, e.g. ``("stack", 3)``.

    The line is looked up lazily through :meth:`ResourceSet.line` (see :mod:`.linemap`).
    """

    file: str
    path: tuple[str | int, ...]


class SystemCommand(msgspec.Struct, omit_defaults=False):
    """Komodo's ``SystemCommand``: ``command`` (one or more lines) run in ``path``; with
    ``shell_mode`` the lines go to the shell as one script."""

    path: str = ""
    command: str = ""
    shell_mode: bool = False


class EnvFile(msgspec.Struct):
    path: str
    track: bool = True


class ConfigFile(msgspec.Struct):
    """Komodo's ``StackFileDependency``; ``requires`` defaults to ``None`` as there."""

    path: str
    services: list[str] = msgspec.field(default_factory=list)
    requires: Literal["None", "Restart", "Redeploy"] = "None"


class MaintenanceWindow(msgspec.Struct):
    """Komodo's ``MaintenanceWindow`` (alerts are held during it)."""

    name: str = ""
    description: str = ""
    schedule_type: str = "Daily"
    day_of_week: str = ""
    date: str = ""
    hour: int = 0
    minute: int = 0
    duration_minutes: int = 0
    timezone: str = ""
    enabled: bool = True


class Health(msgspec.Struct):
    """stackward: how to gate a deploy on health. ``timeout`` in seconds."""

    timeout: int = 300
    wait: bool = True


class StackConfig(msgspec.Struct):
    server: str = ""
    swarm: str = ""
    links: list[str] = msgspec.field(default_factory=list)
    project_name: str = ""
    auto_pull: bool = True
    run_build: bool = False
    poll_for_updates: bool = False
    auto_update: bool = False
    auto_update_all_services: bool = False
    auto_update_skip_services: list[str] = msgspec.field(default_factory=list)
    destroy_before_deploy: bool = False
    skip_secret_interp: bool = False
    linked_repo: str = ""
    git_provider: str = "github.com"
    git_https: bool = True
    git_account: str = ""
    repo: str = ""
    branch: str = "main"
    commit: str = ""
    clone_path: str = ""
    reclone: bool = False
    webhook_enabled: bool = True
    webhook_secret: str = ""
    webhook_force_deploy: bool = False
    files_on_host: bool = False
    run_directory: str = ""
    file_paths: list[str] = msgspec.field(default_factory=list)
    env_file_path: str = ".env"
    additional_env_files: list[EnvFile] = msgspec.field(default_factory=list)
    config_files: list[ConfigFile] = msgspec.field(default_factory=list)
    send_alerts: bool = True
    registry_provider: str = ""
    registry_account: str = ""
    # Komodo's one SystemCommand each, held as a list of zero (no command) or one.
    pre_deploy: list[SystemCommand] = msgspec.field(default_factory=list)
    post_deploy: list[SystemCommand] = msgspec.field(default_factory=list)
    extra_args: list[str] = msgspec.field(default_factory=list)
    build_extra_args: list[str] = msgspec.field(default_factory=list)
    compose_cmd_wrapper: str = ""
    compose_cmd_wrapper_include: list[str] = msgspec.field(default_factory=list)
    ignore_services: list[str] = msgspec.field(default_factory=list)
    file_contents: str = ""
    environment: str = ""
    health: Health = msgspec.field(default_factory=Health)

    def compose_files(self) -> list[str]:
        """The compose files, relative to ``run_directory`` (Komodo's default ``compose.yaml``)."""
        return self.file_paths or ["compose.yaml"]


class ServerConfig(msgspec.Struct):
    address: str = ""
    insecure_tls: bool = True
    external_address: str = ""
    region: str = ""
    enabled: bool = False
    auto_rotate_keys: bool = True
    passkey: str = ""
    ignore_mounts: list[str] = msgspec.field(default_factory=list)
    auto_prune: bool = True
    links: list[str] = msgspec.field(default_factory=list)
    stats_monitoring: bool = True
    send_unreachable_alerts: bool = True
    send_cpu_alerts: bool = True
    send_mem_alerts: bool = True
    send_disk_alerts: bool = True
    send_version_mismatch_alerts: bool = True
    cpu_warning: float = 90.0
    cpu_critical: float = 99.0
    mem_warning: float = 75.0
    mem_critical: float = 95.0
    disk_warning: float = 75.0
    disk_critical: float = 95.0
    maintenance_windows: list[MaintenanceWindow] = msgspec.field(default_factory=list)
    public_key: str = ""


class SwarmConfig(msgspec.Struct):
    servers: list[str] = msgspec.field(default_factory=list)
    links: list[str] = msgspec.field(default_factory=list)
    send_unhealthy_alerts: bool = True
    maintenance_windows: list[MaintenanceWindow] = msgspec.field(default_factory=list)


class RepoConfig(msgspec.Struct):
    server: str = ""
    builder: str = ""
    git_provider: str = "github.com"
    git_https: bool = True
    git_account: str = ""
    repo: str = ""
    branch: str = "main"
    commit: str = ""
    webhook_enabled: bool = True
    webhook_secret: str = ""
    path: str = ""
    links: list[str] = msgspec.field(default_factory=list)
    on_clone: list[SystemCommand] = msgspec.field(default_factory=list)
    on_pull: list[SystemCommand] = msgspec.field(default_factory=list)
    environment: str = ""
    env_file_path: str = ".env"
    skip_secret_interp: bool = False
    url: str = ""


class ResourceSyncConfig(msgspec.Struct):
    linked_repo: str = ""
    git_provider: str = "github.com"
    git_https: bool = True
    git_account: str = ""
    repo: str = ""
    branch: str = "main"
    commit: str = ""
    webhook_enabled: bool = True
    webhook_secret: str = ""
    files_on_host: bool = False
    resource_path: list[str] = msgspec.field(default_factory=list)
    managed: bool = False
    delete: bool = False
    include_resources: bool = True
    match_tags: list[str] = msgspec.field(default_factory=list)
    include_variables: bool = False
    include_user_groups: bool = False
    pending_alert: bool = True
    file_contents: str = ""


_TARGET_PARAMS = (
    "stack",
    "deployment",
    "build",
    "repo",
    "procedure",
    "action",
    "sync",
    "server",
    "swarm",
    "pattern",
)


class Execution(msgspec.Struct):
    """Komodo's ``Execution``: ``{type, params}`` (the params depend on the type; typed when
    procedures are run, until then kept as written)."""

    type: str = "None"
    params: dict[str, Any] = msgspec.field(default_factory=dict)

    def target(self) -> str:
        """What the execution acts on (its ``stack``, ``repo``... or ``pattern``), or ""."""
        for key in _TARGET_PARAMS:
            value = self.params.get(key)
            if isinstance(value, str) and value:
                return value
        return ""


class StageExecution(msgspec.Struct):
    execution: Execution = msgspec.field(default_factory=Execution)
    enabled: bool = True


class Stage(msgspec.Struct):
    name: str = ""
    enabled: bool = True
    executions: list[StageExecution] = msgspec.field(default_factory=list)


class ProcedureConfig(msgspec.Struct):
    stages: list[Stage] = msgspec.field(default_factory=list)
    schedule_format: str = ""  # "": not written, Komodo's default (English)
    schedule: str = ""
    schedule_enabled: bool = True
    schedule_timezone: str = ""
    schedule_alert: bool = True
    failure_alert: bool = True
    webhook_enabled: bool = True
    webhook_secret: str = ""


class VariableConfig(msgspec.Struct):
    value: str = ""
    is_secret: bool = False


AnyConfig = (
    StackConfig
    | ServerConfig
    | SwarmConfig
    | RepoConfig
    | ResourceSyncConfig
    | ProcedureConfig
    | VariableConfig
)

CONFIG_TYPES: dict[str, type[Any]] = {
    "stack": StackConfig,
    "server": ServerConfig,
    "swarm": SwarmConfig,
    "repo": RepoConfig,
    "resource_sync": ResourceSyncConfig,
    "procedure": ProcedureConfig,
    "variable": VariableConfig,
}


C = TypeVar("C", bound=msgspec.Struct)


class Resource(msgspec.Struct):
    kind: str
    name: str
    config: Any  # the Struct of CONFIG_TYPES[kind]; typed access: typed_config()
    source: SourceRef
    description: str = ""
    tags: list[str] = msgspec.field(default_factory=list)
    deploy: bool = False
    after: list[str] = msgspec.field(default_factory=list)
    tier: str = ""
    on_drift: str = ""
    wait_for: list[str] = msgspec.field(default_factory=list)  # stackward: order only

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    def typed_config(self, cls: type[C]) -> C:
        """The config as ``cls`` (checked): ``res.typed_config(StackConfig).run_directory``."""
        if not isinstance(self.config, cls):
            raise TypeError(f"{self.kind} {self.name!r}: its config is no {cls.__name__}")
        return self.config


def config_from_canonical(kind: str, config: Mapping[str, Any]) -> Any:
    """A stored canonical config (``canonical(res)["config"]``, plain data) as the typed Struct
    the loader builds (:data:`CONFIG_TYPES`). Fields the stored form lacks (stored before they
    existed) take their defaults, so a stored config and a newly loaded one compare equal field
    by field. Raises :class:`ResourceError` when the data does not fit the kind."""
    cls = CONFIG_TYPES.get(kind)
    if cls is None:
        raise ResourceError(f"no resource kind {kind!r}")
    try:
        return msgspec.convert(config, cls)
    except msgspec.ValidationError as exc:
        raise ResourceError(f"stored {kind} config does not fit: {exc}") from exc


def resource_from_canonical(
    kind: str, name: str, data: Mapping[str, Any], source: SourceRef | None = None
) -> Resource:
    """A stored canonical resource (``canonical(res)``: description, tags, deploy, after, tier,
    on_drift, config) back as the :class:`Resource` the loader builds, its config typed. A
    secret variable comes back with its masked value (the store never holds the secret)."""
    return Resource(
        kind=kind,
        name=name,
        config=config_from_canonical(kind, data.get("config") or {}),
        source=source or SourceRef("state", ()),
        description=str(data.get("description") or ""),
        tags=list(data.get("tags") or []),
        deploy=bool(data.get("deploy", False)),
        after=list(data.get("after") or []),
        tier=str(data.get("tier") or ""),
        on_drift=str(data.get("on_drift") or ""),
    )


@dataclass
class ResourceSet:
    """Everything loaded from one or more files, with what was found wrong on the way."""

    resources: dict[tuple[str, str], Resource] = field(default_factory=dict)
    tiers: list[str] = field(default_factory=list)
    tiers_source: SourceRef | None = None
    findings: list[Finding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    linemaps: dict[str, LineMap] = field(default_factory=dict)
    # (kind, name) -> keys of core.resources.support that apply to the entry, in file order
    inert: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # (kind, name) of entries with an error of their own
    faulty: set[tuple[str, str]] = field(default_factory=set)

    def line(self, source: SourceRef, *subpath: str | int) -> int:
        lm = self.linemaps.get(source.file)
        return lm.line_of((*source.path, *subpath)) if lm is not None else 1

    def finding(
        self,
        severity: Severity,
        source: SourceRef,
        subpath: tuple[str | int, ...],
        message: str,
        code: str = "invalid",
    ) -> Finding:
        f = Finding(source.file, self.line(source, *subpath), severity, message, code)
        self.findings.append(f)
        if severity == "error":
            owner = next((r.key for r in self.resources.values() if r.source == source), None)
            if owner is not None:
                self.faulty.add(owner)
        return f

    def config(self, kind: str, name: str, cls: type[C]) -> C | None:
        """The typed config of ``(kind, name)``, or None: ``rs.config("repo", n, RepoConfig)``."""
        res = self.resources.get((kind, name))
        return None if res is None else res.typed_config(cls)

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.kind == kind]

    def stacks(self) -> list[Resource]:
        return self.of_kind("stack")

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def sorted_findings(self) -> list[Finding]:
        return sorted(set(self.findings), key=lambda f: (f.file, f.line, f.severity, f.message))
