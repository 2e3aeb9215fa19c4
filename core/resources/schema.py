"""What keys each resource kind knows, and of what type.

The lists follow Komodo's own config structs (``StackConfig``, ``ServerConfig``, ``SwarmConfig``,
``RepoConfig``, ``ResourceSyncConfig``, ``ProcedureConfig``, ``Variable``) so that a Komodo user's
file loads unchanged, plus stackward's few additions (DESIGN.md: ``tiers``, ``tier``,
``[stack.config.health]``, ``[server.config] public_key``, ``[repo.config] url``, and ``on_drift``
on a stack). Komodo's aliases (``server_id``/``server``, ``swarm_id``/``swarm``, ``server_ids``/
``servers``, ``builder_id``/``builder``, ``stages``/``stage``, a stage's ``execution``/
``executions``, and the plural tables ``[[stacks]]``...) map to one canonical name.

A type is one of the short codes below; :func:`core.resources.loader` checks values against them
and reports the expected type in words (:data:`TYPE_WORDS`).
"""

from __future__ import annotations

from typing import Final

# Type codes.
STR: Final = "str"
BOOL: Final = "bool"
INT: Final = "int"
NUMBER: Final = "number"
STRLIST: Final = "strlist"  # a list of strings, or one string split on newlines/commas
STRLIST_STRICT: Final = "list[str]"
ENV: Final = "env"  # multi-line KEY=value string, or an array of {variable, value}
COMMAND: Final = "command"  # {path, command, shell_mode}
ENV_FILES: Final = "env_files"  # list of strings or {path, track}
CONFIG_FILES: Final = "config_files"  # list of strings or {path, services, requires}
HEALTH: Final = "health"  # {timeout, wait}
DURATION: Final = "duration"  # seconds (int) or "90s" / "5m" / "1h"
STAGES: Final = "stages"
TABLE_LIST: Final = "list[table]"
WINDOWS: Final = "windows"  # maintenance windows
ENDPOINT: Final = "endpoint"  # an alerter's {type, params}
TARGETS: Final = "targets"  # an array of {type, id} (Komodo's ResourceTarget)
TABLE: Final = "table"
ANY: Final = "any"

TYPE_WORDS: Final[dict[str, str]] = {
    STR: "a string",
    BOOL: "a boolean (true or false)",
    INT: "an integer",
    NUMBER: "a number",
    STRLIST: "a list of strings",
    STRLIST_STRICT: "a list of strings",
    ENV: "a multi-line string of KEY = value lines, or an array of tables {variable, value}",
    COMMAND: "a table {path, command, shell_mode}",
    ENV_FILES: "a list of paths or of tables {path, track}",
    CONFIG_FILES: "a list of paths or of tables {path, services, requires}",
    HEALTH: "a table {timeout, wait}",
    DURATION: 'a duration: seconds as an integer, or a string such as "90s", "5m", "1h"',
    STAGES: "an array of tables {name, enabled, executions}",
    TABLE_LIST: "an array of tables",
    WINDOWS: "an array of tables {name, schedule_type, day_of_week, date, hour, minute, ...}",
    ENDPOINT: 'a table {type = "Ntfy" | "Discord" | "Slack" | "Custom", params = {url = "..."}}',
    TARGETS: 'an array of tables {type = "Stack", id = "NAME"}',
    TABLE: "a table",
    ANY: "any value",
}

SUPPORTED_KINDS: Final = (
    "server",
    "swarm",
    "repo",
    "stack",
    "resource_sync",
    "variable",
    "procedure",
    "alerter",
)
# Komodo tables stackward reads past with a warning.
UNSUPPORTED_KINDS: Final = frozenset(
    {"build", "builder", "action", "user_group", "deployment", "server_template"}
)
TOP_LEVEL_KEYS: Final = frozenset({*SUPPORTED_KINDS, *UNSUPPORTED_KINDS, "tiers"})
# Komodo's ResourcesToml takes the plural as well (``stacks``, ``servers``...): one canonical.
KIND_ALIASES: Final[dict[str, str]] = {
    "servers": "server",
    "swarms": "swarm",
    "repos": "repo",
    "stacks": "stack",
    "resource_syncs": "resource_sync",
    "variables": "variable",
    "procedures": "procedure",
    "builds": "build",
    "builders": "builder",
    "actions": "action",
    "alerters": "alerter",
    "user_groups": "user_group",
    "deployments": "deployment",
}

# Keys of the entry itself (outside ``config``), per kind.
_COMMON_ENTRY: Final = {
    "name": STR,
    "description": STR,
    "tags": STRLIST_STRICT,
    "template": BOOL,
    "config": ANY,
}
ENTRY_KEYS: Final[dict[str, dict[str, str]]] = {
    "server": {**_COMMON_ENTRY},
    "swarm": {**_COMMON_ENTRY},
    "repo": {**_COMMON_ENTRY, "after": STRLIST_STRICT},
    "resource_sync": {**_COMMON_ENTRY},
    "procedure": {**_COMMON_ENTRY},
    "alerter": {**_COMMON_ENTRY},
    "stack": {
        **_COMMON_ENTRY,
        "deploy": BOOL,
        "after": STRLIST_STRICT,
        "wait_for": STRLIST_STRICT,  # stackward: start after these, never redeploy with them
        "tier": STR,  # stackward
        "on_drift": STR,  # stackward (later issue): alert | redeploy | ignore
    },
    "variable": {"name": STR, "description": STR, "value": STR, "is_secret": BOOL},
}

ON_DRIFT_VALUES: Final = ("alert", "redeploy", "ignore")

_GIT: Final = {
    "linked_repo": STR,
    "git_provider": STR,
    "git_https": BOOL,
    "git_account": STR,
    "repo": STR,
    "branch": STR,
    "commit": STR,
    "webhook_enabled": BOOL,
    "webhook_secret": STR,
}

CONFIG_KEYS: Final[dict[str, dict[str, str]]] = {
    "stack": {
        "server": STR,
        "swarm": STR,
        "links": STRLIST,
        "project_name": STR,
        "auto_pull": BOOL,
        "run_build": BOOL,
        "poll_for_updates": BOOL,
        "auto_update": BOOL,
        "auto_update_all_services": BOOL,
        "auto_update_skip_services": STRLIST,
        "destroy_before_deploy": BOOL,
        "skip_secret_interp": BOOL,
        **_GIT,
        "clone_path": STR,
        "reclone": BOOL,
        "webhook_force_deploy": BOOL,
        "files_on_host": BOOL,
        "run_directory": STR,
        "file_paths": STRLIST,
        "env_file_path": STR,
        "additional_env_files": ENV_FILES,
        "config_files": CONFIG_FILES,
        "send_alerts": BOOL,
        "registry_provider": STR,
        "registry_account": STR,
        "pre_deploy": COMMAND,
        "post_deploy": COMMAND,
        "extra_args": STRLIST,
        "build_extra_args": STRLIST,
        "compose_cmd_wrapper": STR,
        "compose_cmd_wrapper_include": STRLIST,
        "ignore_services": STRLIST,
        "file_contents": STR,
        "environment": ENV,
        "health": HEALTH,  # stackward
    },
    "server": {
        "address": STR,
        "insecure_tls": BOOL,
        "external_address": STR,
        "region": STR,
        "enabled": BOOL,
        "auto_rotate_keys": BOOL,
        "passkey": STR,
        "ignore_mounts": STRLIST,
        "auto_prune": BOOL,
        "links": STRLIST,
        "stats_monitoring": BOOL,
        "send_unreachable_alerts": BOOL,
        "send_cpu_alerts": BOOL,
        "send_mem_alerts": BOOL,
        "send_disk_alerts": BOOL,
        "send_version_mismatch_alerts": BOOL,
        "cpu_warning": NUMBER,
        "cpu_critical": NUMBER,
        "mem_warning": NUMBER,
        "mem_critical": NUMBER,
        "disk_warning": NUMBER,
        "disk_critical": NUMBER,
        "maintenance_windows": WINDOWS,
        "public_key": STR,  # stackward
    },
    "swarm": {
        "servers": STRLIST,
        "links": STRLIST,
        "send_unhealthy_alerts": BOOL,
        "maintenance_windows": WINDOWS,
    },
    "repo": {
        "server": STR,
        "builder": STR,
        **{k: v for k, v in _GIT.items() if k != "linked_repo"},
        "path": STR,
        "links": STRLIST,
        "on_clone": COMMAND,
        "on_pull": COMMAND,
        "environment": ENV,
        "env_file_path": STR,
        "skip_secret_interp": BOOL,
        "url": STR,  # stackward
    },
    "resource_sync": {
        **_GIT,
        "files_on_host": BOOL,
        "resource_path": STRLIST,
        "managed": BOOL,
        "delete": BOOL,
        "include_resources": BOOL,
        "match_tags": STRLIST,
        "include_variables": BOOL,
        "include_user_groups": BOOL,
        "pending_alert": BOOL,
        "file_contents": STR,
    },
    "procedure": {
        "stages": STAGES,
        "schedule_format": STR,
        "schedule": STR,
        "schedule_enabled": BOOL,
        "schedule_timezone": STR,
        "schedule_alert": BOOL,
        "failure_alert": BOOL,
        "webhook_enabled": BOOL,
        "webhook_secret": STR,
    },
    "variable": {},
    "alerter": {
        "enabled": BOOL,
        "endpoint": ENDPOINT,
        "alert_types": STRLIST_STRICT,
        "resources": TARGETS,
        "except_resources": TARGETS,
        "maintenance_windows": WINDOWS,
    },
}

# Komodo's alternative spellings -> the canonical key.
ALIASES: Final[dict[str, dict[str, str]]] = {
    "stack": {"server_id": "server", "swarm_id": "swarm"},
    "repo": {"server_id": "server", "builder_id": "builder"},
    "swarm": {"server_ids": "servers"},
    "procedure": {"stage": "stages"},
}

# Sub-tables with their own key lists.
COMMAND_KEYS: Final = {"path": STR, "command": STR, "shell_mode": BOOL}
ENV_VAR_KEYS: Final = {"variable": STR, "value": STR}
HEALTH_KEYS: Final = {"timeout": DURATION, "wait": BOOL}
ENV_FILE_KEYS: Final = {"path": STR, "track": BOOL}
CONFIG_FILE_KEYS: Final = {"path": STR, "services": STRLIST, "requires": STR}
STAGE_KEYS: Final = {"name": STR, "enabled": BOOL, "executions": TABLE_LIST}
STAGE_ALIASES: Final = {"execution": "executions"}  # Komodo's ProcedureStage
EXECUTION_KEYS: Final = {"execution": ANY, "enabled": BOOL}
# Komodo's StackFileRequires: the variant or its lowercase alias.
CONFIG_FILE_REQUIRES: Final = {
    "None": "None",
    "none": "None",
    "Restart": "Restart",
    "restart": "Restart",
    "Redeploy": "Redeploy",
    "redeploy": "Redeploy",
}
ENDPOINT_TYPES: Final = ("Ntfy", "Discord", "Slack", "Custom", "Pushover")  # Komodo's
TARGET_TYPES: Final = (  # Komodo's ResourceTarget variants
    "System",
    "Swarm",
    "Server",
    "Stack",
    "Deployment",
    "Build",
    "Repo",
    "Procedure",
    "Action",
    "Builder",
    "Alerter",
    "ResourceSync",
)
ENDPOINT_PARAM_KEYS: Final = {"url": STR, "email": STR}
ALERTER_DEFAULT_URLS: Final = {  # Komodo's, when url is not written (Slack's, Discord's: dummies)
    "Custom": "http://localhost:7000",
    "Ntfy": "http://localhost:8080/komodo",
}
ALERT_TYPES_RAISED: Final = (  # the alert types stackward raises (core/alerts/model.py: when)
    "StackDeployFailed",
    "StackStateChange",
    "StackDrift",
    "ServerUnreachable",
    "StackImageUpdateAvailable",
    "StackAutoUpdated",
    "ProcedureFailed",
    "ScheduleRun",
    "ScheduleMissed",
)
ALERT_TYPES_KOMODO: Final = frozenset(  # Komodo's AlertDataVariant names
    {
        "None",
        "Test",
        "SwarmUnhealthy",
        "ServerUnreachable",
        "ServerCpu",
        "ServerMem",
        "ServerDisk",
        "ServerVersionMismatch",
        "ContainerStateChange",
        "DeploymentImageUpdateAvailable",
        "DeploymentAutoUpdated",
        "StackStateChange",
        "StackImageUpdateAvailable",
        "StackAutoUpdated",
        "AwsBuilderTerminationFailed",
        "ResourceSyncPendingUpdates",
        "BuildFailed",
        "RepoBuildFailed",
        "ProcedureFailed",
        "ActionFailed",
        "ScheduleRun",
        "Custom",
    }
)
TARGET_KEYS: Final = {"type": STR, "id": STR}
MAINTENANCE_WINDOW_KEYS: Final = {
    "name": STR,
    "description": STR,
    "schedule_type": STR,
    "day_of_week": STR,
    "date": STR,
    "hour": INT,
    "minute": INT,
    "duration_minutes": INT,
    "timezone": STR,
    "enabled": BOOL,
}
