"""The core's typed configuration, read from TOML.

::

    listen = "0.0.0.0:9120"          # host:port of the HTTP API
    data_dir = "/var/lib/stackward"  # SQLite state and everything else the core keeps
    private_key = "/etc/stackward/core.key"   # the core's Ed25519 key (OpenSSH format)
    api_tokens = ["..."]             # bearer tokens of the HTTP API; or:
    api_tokens_file = "/etc/stackward/tokens" # one token a line, '#' comments
    webhook_secret = "..."           # HMAC secret of the git webhooks
    webhook_secrets = ["..."]        # more valid at once, while one is rotated
    poll_interval = 60               # seconds between looks at each git sync's branch; 0: never
    resources = ["/etc/stackward/resources.toml"]  # local files or directories loaded at start
    max_body_bytes = 1048576         # HTTP request bodies larger than this are refused
    event_origins = ["https://dash.example.org"]  # browser Origins allowed on /ws/events
    event_queue = 1024               # events queued per subscriber before it is "lagged"
    event_keep = 200000              # events kept in the store (the newest) ...
    event_keep_days = 14             # ... and for at most this long
    public_status = false            # true: GET /status/NAME answers without a token
    drift_grace = 30                 # seconds a stack may be unhealthy before it is drift
    drift_redeploys = 3              # on_drift = "redeploy": at most this many ...
    drift_window = 3600              # ... redeploys per stack in this many seconds
    reconcile = "auto"               # auto: deploy what is not converged (at start, after a
                                     # failure's backoff, every reconcile_interval); manual: only
                                     # when asked (apply, deploy, POST /api/reconcile)
    reconcile_interval = 60          # seconds between reconcile passes (auto)
    deploy_parallel = 16             # stacks whose commands run at once (health gates wait aside)
    event_send_timeout = 30          # a subscriber that takes no event for this long is dropped
    viewer_tokens = ["..."]          # read-only tokens (the dashboard's viewers): GET only
    viewer_tokens_file = "/etc/stackward/viewers"  # one token a line, '#' comments
    session_ttl = 43200              # seconds a dashboard sign-in lasts
    max_sessions = 1000              # dashboard sessions kept; signing in past it ends the oldest

    [secrets]                        # values for [[NAME]] the resource files do not define
    DB_PASSWORD = "..."

    [swarm_secrets]                  # swarm secrets kept from [secrets] (core.deploy.secrets):
    db_password = "DB_PASSWORD"      # each Swarm deploy creates a missing version first

    pre_deploy_timeout = 300         # seconds a stack's pre_deploy command may run
    post_deploy_timeout = 300        # seconds a stack's post_deploy command may run

    [external_secrets]               # swarm secrets made under these plain names when missing
    proxy_token = "PROXY_TOKEN"      # (a stack declares them external): name → key of [secrets]
    external_networks = ["proxy"]    # overlay networks (attachable) made when a stack's file
                                     # declares them external and they are missing

    image_poll_interval = 3600       # seconds between image update checks (poll_for_updates,
                                     # auto_update); 0: only when asked (GlobalAutoUpdate, API)
    registry_timeout = 15            # seconds for one request to an image registry
    alert_timeout = 10               # seconds for one attempt to send an alert
    alert_retries = 3                # attempts after the first, waiting alert_backoff seconds,
    alert_backoff = 2                # doubled each time (at most 60)
    alert_queue = 256                # alerts waiting per alerter (the oldest dropped past it)
    agent_lost_grace = 30            # seconds an agent may be gone before "agent lost" is sent

    [[git_provider]]                 # Komodo's: tokens of git_account (private repositories)
    domain = "github.com"
    accounts = [{ username = "me", token = "..." }]

    [[image_registry]]               # Komodo's: tokens of registry_account (docker login)
    domain = "ghcr.io"
    accounts = [{ username = "me", token = "..." }]

    timezone = "Europe/Berlin"       # Komodo's: schedules without schedule_timezone (default:
                                     # the host's zone)
    max_backups = 14                 # Komodo's: BackupCoreDatabase keeps this many (0: all)

Relative paths are taken from the config file's directory. Every problem raises
:class:`~core.exceptions.ConfigError` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from core.deploy.secrets import valid_logical_name
from core.exceptions import ConfigError
from core.tomlconfig import load_struct

DEFAULT_LISTEN = "0.0.0.0:9120"
NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class Account(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    username: str
    token: str

    def __repr__(self) -> str:
        return f"Account(username={self.username!r}, token=<hidden>)"


class GitProvider(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Komodo's ``[[git_provider]]``: the accounts whose tokens clone private repositories."""

    domain: str
    https: bool = True
    accounts: list[Account] = msgspec.field(default_factory=list)


class ImageRegistry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Komodo's ``[[image_registry]]``: the accounts a stack logs in with before deploying."""

    domain: str
    accounts: list[Account] = msgspec.field(default_factory=list)
    organizations: list[str] = msgspec.field(default_factory=list)


class CoreConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    data_dir: str
    listen: str = DEFAULT_LISTEN
    private_key: str = ""
    api_tokens: list[str] = msgspec.field(default_factory=list)
    api_tokens_file: str = ""
    webhook_secret: str = ""
    webhook_secrets: list[str] = msgspec.field(default_factory=list)  # more, while rotating
    poll_interval: float = 60.0  # seconds between looks at each git sync's branch (jittered)
    resources: list[str] = msgspec.field(default_factory=list)
    secrets: dict[str, str] = msgspec.field(default_factory=dict)
    # Swarm secrets the core keeps: logical name → the key of its value in ``secrets``.
    swarm_secrets: dict[str, str] = msgspec.field(default_factory=dict)
    max_body_bytes: int = 1024 * 1024
    event_origins: list[str] = msgspec.field(default_factory=list)
    event_queue: int = 1024
    event_keep: int = 200_000
    event_keep_days: float = 14.0
    public_status: bool = False
    drift_grace: float = 30.0
    drift_redeploys: int = 3
    drift_window: float = 3600.0
    reconcile: str = "auto"
    reconcile_interval: float = 60.0
    deploy_parallel: int = 16  # stacks of a run whose commands run at once (not their gates)
    event_send_timeout: float = 30.0
    pre_deploy_timeout: float = 300.0  # seconds a stack's pre_deploy command may run
    post_deploy_timeout: float = 300.0  # seconds a stack's post_deploy command may run
    # Swarm secrets made under their plain names: name → the key of its value in ``secrets``.
    external_secrets: dict[str, str] = msgspec.field(default_factory=dict)
    # Overlay networks made (attachable) when a stack declares them external and they are missing.
    external_networks: list[str] = msgspec.field(default_factory=list)
    git_provider: list[GitProvider] = msgspec.field(default_factory=list)
    image_registry: list[ImageRegistry] = msgspec.field(default_factory=list)
    image_poll_interval: float = 3600.0  # seconds between image update checks; 0: when asked
    registry_timeout: float = 15.0  # seconds for one request to an image registry
    alert_timeout: float = 10.0  # seconds for one attempt to send an alert
    alert_retries: int = 3  # attempts after the first
    alert_backoff: float = 2.0  # seconds before the first retry, doubled each time (max 60)
    alert_queue: int = 256  # alerts waiting per alerter
    agent_lost_grace: float = 30.0  # seconds an agent may be gone before it is alerted
    timezone: str = ""  # procedures' schedules without schedule_timezone; "" : the host's
    max_backups: int = 14  # BackupCoreDatabase keeps this many in data_dir/backups (0: all)
    # Read-only tokens (the dashboard's viewers) and the dashboard's browser sessions.
    viewer_tokens: list[str] = msgspec.field(default_factory=list)
    viewer_tokens_file: str = ""
    session_ttl: float = 12 * 3600.0
    max_sessions: int = 1000
    # Where the config was read from (not a key of the file).
    source: str = ""

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def git_token(self, domain: str, username: str) -> str | None:
        """The token of ``username`` at git provider ``domain`` (Komodo's ``git_token``)."""
        return _token(self.git_provider, domain, username)

    def registry_token(self, domain: str, username: str) -> str | None:
        """The token of ``username`` at image registry ``domain`` (``registry_token``)."""
        return _token(self.image_registry, domain, username)

    def __repr__(self) -> str:  # never show tokens or secrets
        return (
            f"CoreConfig(source={self.source!r}, listen={self.listen!r},"
            f" data_dir={self.data_dir!r})"
        )


def _token(
    providers: Sequence[GitProvider | ImageRegistry], domain: str, username: str
) -> str | None:
    for provider in providers:
        if provider.domain == domain:
            for account in provider.accounts:
                if account.username == username:
                    return account.token
    return None


def _tokens(file: Path, key: str, given: list[str], tokens_file: str) -> list[str]:
    """The tokens of ``key`` and of its ``_file`` (one a line, '#' comments), each checked."""
    tokens = list(given)
    if tokens_file:
        try:
            lines = Path(tokens_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(
                f'{file}: key "{key}_file": cannot read {tokens_file}: {exc.strerror or exc}'
            ) from exc
        tokens += [t.strip() for t in lines if t.strip() and not t.strip().startswith("#")]
    for t in tokens:
        if len(t) < 16:
            raise ConfigError(
                f'{file}: key "{key}": a token is shorter than 16'
                " characters; use a long random token"
            )
    return tokens


def load_config(path: str | os.PathLike[str]) -> CoreConfig:
    cfg, file = load_struct(path, CoreConfig)
    return _finish(cfg, file)


def _finish(cfg: CoreConfig, file: Path) -> CoreConfig:
    base = file.resolve().parent

    def rel(p: str) -> str:
        return str(base / p) if p and not os.path.isabs(p) else p

    if ":" not in cfg.listen or not cfg.listen.rsplit(":", 1)[1].isdigit():
        raise ConfigError(
            f'{file}: key "listen": "{cfg.listen}" is not host:port, e.g. "{DEFAULT_LISTEN}"'
        )
    if not 0 <= int(cfg.listen.rsplit(":", 1)[1]) < 65536:  # 0: any free port
        raise ConfigError(f'{file}: key "listen": port out of range')
    if not cfg.data_dir:
        raise ConfigError(f'{file}: key "data_dir": must not be empty')
    if cfg.max_body_bytes < 1024:
        raise ConfigError(f'{file}: key "max_body_bytes": at least 1024')
    if cfg.poll_interval < 0:
        raise ConfigError(f'{file}: key "poll_interval": seconds, 0 (never) or more')
    for logical, key in cfg.swarm_secrets.items():
        if not valid_logical_name(logical):
            raise ConfigError(
                f"{file}: key \"swarm_secrets.{logical}\": letters, digits, '_', '.' or '-',"
                " at most 55, starting with a letter or digit"
            )
        if not cfg.secrets.get(key):
            raise ConfigError(
                f'{file}: key "swarm_secrets.{logical}": {key!r} is not a key of [secrets]'
                " with a value"
            )
    if 0 < cfg.image_poll_interval < 1:
        raise ConfigError(
            f'{file}: key "image_poll_interval": seconds, 0 (only when asked) or at least 1'
        )
    if cfg.reconcile not in ("auto", "manual"):
        raise ConfigError(f'{file}: key "reconcile": "{cfg.reconcile}" is not auto or manual')
    for name, key in cfg.external_secrets.items():
        if not valid_logical_name(name):
            raise ConfigError(
                f"{file}: key \"external_secrets.{name}\": letters, digits, '_', '.' or '-',"
                " at most 55, starting with a letter or digit"
            )
        if not cfg.secrets.get(key):
            raise ConfigError(
                f'{file}: key "external_secrets.{name}": {key!r} is not a key of [secrets]'
                " with a value"
            )
    both = sorted(set(cfg.external_secrets) & set(cfg.swarm_secrets))
    if both:
        raise ConfigError(
            f'{file}: key "external_secrets.{both[0]}": also in [swarm_secrets]; keep one'
        )
    for index, network in enumerate(cfg.external_networks):
        if not NETWORK_NAME.fullmatch(network):
            raise ConfigError(
                f'{file}: key "external_networks[{index}]": {network!r}: letters, digits, "_",'
                ' ".", "-", starting with a letter or digit'
            )
    tables: list[tuple[str, Sequence[GitProvider | ImageRegistry]]] = [
        ("git_provider", cfg.git_provider),
        ("image_registry", cfg.image_registry),
    ]
    for table, providers in tables:
        for index, provider in enumerate(providers):
            if not provider.domain:
                raise ConfigError(f'{file}: key "{table}[{index}].domain": must not be empty')
            for n, account in enumerate(provider.accounts):
                if not account.username or not account.token:
                    raise ConfigError(
                        f'{file}: key "{table}[{index}].accounts[{n}]": give username and token'
                    )
    for key, value, low in (
        ("reconcile_interval", cfg.reconcile_interval, 1),
        ("deploy_parallel", cfg.deploy_parallel, 1),
        ("event_send_timeout", cfg.event_send_timeout, 0.5),
        ("pre_deploy_timeout", cfg.pre_deploy_timeout, 1),
        ("post_deploy_timeout", cfg.post_deploy_timeout, 1),
        ("event_queue", cfg.event_queue, 16),
        ("event_keep", cfg.event_keep, 100),
        ("event_keep_days", cfg.event_keep_days, 0.01),
        ("drift_grace", cfg.drift_grace, 0),
        ("drift_redeploys", cfg.drift_redeploys, 0),
        ("drift_window", cfg.drift_window, 1),
        ("image_poll_interval", cfg.image_poll_interval, 0),
        ("registry_timeout", cfg.registry_timeout, 0.1),
        ("alert_timeout", cfg.alert_timeout, 0.1),
        ("alert_retries", cfg.alert_retries, 0),
        ("alert_backoff", cfg.alert_backoff, 0),
        ("alert_queue", cfg.alert_queue, 1),
        ("agent_lost_grace", cfg.agent_lost_grace, 0),
        ("session_ttl", cfg.session_ttl, 60),
        ("max_sessions", cfg.max_sessions, 1),
    ):
        if value < low:
            raise ConfigError(f'{file}: key "{key}": must be at least {low}')
    if cfg.timezone:
        try:
            ZoneInfo(cfg.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f'{file}: key "timezone": {cfg.timezone!r} is not a time zone name (e.g.'
                ' "Europe/Berlin", "UTC")'
            ) from exc
    if cfg.max_backups < 0:
        raise ConfigError(f'{file}: key "max_backups": 0 (keep all) or more')
    tokens_file = rel(cfg.api_tokens_file)
    tokens = _tokens(file, "api_tokens", cfg.api_tokens, tokens_file)
    if not tokens:
        raise ConfigError(
            f'{file}: key "api_tokens": no API token; add api_tokens = ["..."] or api_tokens_file'
        )
    viewers_file = rel(cfg.viewer_tokens_file)
    viewers = _tokens(file, "viewer_tokens", cfg.viewer_tokens, viewers_file)
    if set(viewers) & set(tokens):
        raise ConfigError(
            f'{file}: key "viewer_tokens": a token is also in api_tokens; a viewer token must'
            " be a token of its own"
        )
    return msgspec.structs.replace(
        cfg,
        data_dir=rel(cfg.data_dir),
        private_key=rel(cfg.private_key),
        api_tokens=tokens,
        api_tokens_file=tokens_file,
        viewer_tokens=viewers,
        viewer_tokens_file=viewers_file,
        resources=[rel(r) for r in cfg.resources],
        source=str(file),
    )
