"""From resources to deploy jobs: where each stack's files come from, which servers may run it,
what is written and run there, with ``[[NAME]]`` interpolated. Pure (the commit is resolved
elsewhere).

Komodo's rules, each matched here once:

- Where the files come from (periphery ``stack/write.rs``, ``write_stack``): ``files_on_host``
  first, then ``linked_repo`` (its ``[[repo]]``), then ``repo``, else ``file_contents`` (a
  stack with none of them is refused, as Komodo refuses it).
- The repository URL (``entities/mod.rs``, ``RepoExecutionArgs::remote_url``):
  ``https://PROVIDER/REPO`` (``http://`` when ``git_https = false``); the account's token never
  goes into it (stackward hands it to git by a credential helper).
- The git token (core ``helpers``, ``stack_git_token``): the linked repo's provider and
  account, else the stack's, looked up in the core's ``[[git_provider]]``.
- Interpolation (``lib/interpolate``, ``interpolate_stack``): ``[[NAME]]`` in
  ``file_contents``, ``environment``, ``pre_deploy.command``, ``post_deploy.command`` and each of
  ``extra_args``, nothing at all with ``skip_secret_interp``.
- The files that must exist (``entities/stack.rs``, ``all_file_dependencies``): the compose
  files (``compose.yaml`` when ``file_paths`` is empty), the tracked ``additional_env_files``,
  the ``config_files``, each once, in that order.
- Commands (``entities/mod.rs``, ``SystemCommand``): no command when it is empty; its text is
  kept with trailing blanks trimmed and one newline (``file_contents_deserializer``). A Swarm
  stack's commands always run in multi-line mode: Komodo's ``DeploySwarmStack`` does not look
  at ``shell_mode`` (``api/swarm/stack.rs``), a Compose stack's ``ComposeUp`` does.
- The registry login (``stack/mod.rs``, ``maybe_login_registry``): only when both
  ``registry_provider`` and ``registry_account`` are set, with the token of
  ``[[image_registry]]`` in the core's config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.config import CoreConfig
from core.deploy.environment import EnvironmentLineError, env_file_text, parse_environment
from core.deploy.stack import CommandStep, StackJob
from core.exceptions import CoreError
from core.git import provider_url
from core.resources.models import (
    RepoConfig,
    Resource,
    ResourceSet,
    StackConfig,
    SwarmConfig,
    SystemCommand,
    VariableConfig,
)
from core.resources.variables import Values
from protocol.gitauth import komodo_username
from protocol.messages import DeployMode, GitCredentials, RegistryLogin, StackSource

DEFAULT_CONFIG = CoreConfig(data_dir="", api_tokens=["-" * 16])
"""The settings a job gets when the caller has no core config (tests, offline tools)."""


class JobError(CoreError):
    """A stack cannot be deployed as configured (the message says what to change)."""


@dataclass(frozen=True)
class Source:
    url: str
    branch: str
    commit: str  # pinned in the resource, or "" for the branch's head
    credentials: GitCredentials | None = None


@dataclass(frozen=True)
class RepoTarget:
    """A ``[[repo]]`` with a server and a path: that periphery keeps a clone there, moved to
    the synced commit before the stacks that link it deploy."""

    name: str
    server: str
    path: str


@dataclass(frozen=True)
class JobPlan:
    """A stack's job without its commit, and the servers that may run it, in preference order.
    ``source`` is None for a stack not from git (``files_on_host``, ``file_contents``): it has
    no commit to resolve."""

    job: StackJob
    source: Source | None
    servers: tuple[str, ...]
    repo: RepoTarget | None = None


def repo_target_of(rs: ResourceSet, stack: Resource, values: Values) -> RepoTarget | None:
    cfg = stack.typed_config(StackConfig)
    if not cfg.linked_repo or cfg.files_on_host:
        return None
    repo = rs.resources.get(("repo", cfg.linked_repo))
    if repo is None:
        return None
    rc = repo.typed_config(RepoConfig)
    if not rc.server or not rc.path:
        return None
    path = values.interpolate(rc.path, where=f"repo {repo.name!r} path")
    return RepoTarget(repo.name, rc.server, path)


def values_of(rs: ResourceSet, secrets: dict[str, str]) -> Values:
    configs = {r.name: r.typed_config(VariableConfig) for r in rs.of_kind("variable")}
    variables = {name: c.value for name, c in configs.items()}
    secret_names = [name for name, c in configs.items() if c.is_secret]
    return Values(variables, secrets, secret_names)


def git_credentials(
    config: CoreConfig, provider: str, account: str, where: str
) -> GitCredentials | None:
    """The token of ``account`` at ``provider`` from ``[[git_provider]]``; None without an
    account (a public repository)."""
    if not account:
        return None
    token = config.git_token(provider, account)
    if token is None:
        raise JobError(
            f"{where}: git_account {account!r} has no token for {provider!r}: add it to the"
            f' core\'s config: [[git_provider]] domain = "{provider}", accounts ='
            f' [{{ username = "{account}", token = "..." }}]'
        )
    username, secret = komodo_username(token)
    return GitCredentials(username=username, token=secret)


def source_of(
    rs: ResourceSet, stack: Resource, values: Values, config: CoreConfig = DEFAULT_CONFIG
) -> Source | None:
    """Where a stack's files come from in git, or None when they do not come from git."""
    cfg = stack.typed_config(StackConfig)
    where = f"stack {stack.name!r}"
    if cfg.files_on_host:
        return None
    if cfg.linked_repo:
        repo = rs.resources.get(("repo", cfg.linked_repo))
        if repo is None:
            raise JobError(f"{where}: linked_repo {cfg.linked_repo!r} is not a [[repo]] here")
        rc = repo.typed_config(RepoConfig)
        if rc.url:
            url = values.interpolate(rc.url, where=f"repo {repo.name!r} url")
        elif rc.repo:
            url = provider_url(rc.git_provider, rc.git_https, rc.repo)
        else:
            raise JobError(f"repo {repo.name!r}: set url (or git_provider and repo)")
        creds = git_credentials(config, rc.git_provider, rc.git_account, f"repo {repo.name!r}")
        return Source(url, rc.branch or "main", rc.commit, creds)
    if cfg.repo:
        creds = git_credentials(config, cfg.git_provider, cfg.git_account, where)
        url = provider_url(cfg.git_provider, cfg.git_https, cfg.repo)
        return Source(url, cfg.branch, cfg.commit, creds)
    if not cfg.file_contents.strip():
        raise JobError(
            f"{where}: no compose files: set linked_repo (a [[repo]]) or repo, files_on_host ="
            " true with run_directory, or file_contents"
        )
    return None


def source_kind(cfg: StackConfig) -> StackSource:
    """Komodo's ``write_stack`` order: files on the host, a repository, else the contents."""
    if cfg.files_on_host:
        return StackSource.FILES_ON_HOST
    if cfg.linked_repo or cfg.repo:
        return StackSource.GIT
    return StackSource.FILE_CONTENTS


def required_files(cfg: StackConfig) -> tuple[str, ...]:
    """Komodo's ``all_file_dependencies``: compose files, tracked env files, config files."""
    paths = [
        *cfg.compose_files(),
        *(f.path for f in cfg.additional_env_files if f.track),
        *(f.path for f in cfg.config_files),
    ]
    return tuple(dict.fromkeys(paths))


def command_text(text: str) -> str:
    """``file_contents_deserializer`` (a command's text, ``file_contents``): trailing blanks
    trimmed, one newline; "" when empty."""
    trimmed = text.rstrip()
    return trimmed + "\n" if trimmed else ""


def registry_login(config: CoreConfig, cfg: StackConfig, where: str) -> RegistryLogin | None:
    if not cfg.registry_provider or not cfg.registry_account:
        return None
    token = config.registry_token(cfg.registry_provider, cfg.registry_account)
    if token is None:
        raise JobError(
            f"{where}: registry_account {cfg.registry_account!r} has no token for"
            f" {cfg.registry_provider!r}: add it to the core's config: [[image_registry]]"
            f' domain = "{cfg.registry_provider}", accounts = [{{ username ='
            f' "{cfg.registry_account}", token = "..." }}]'
        )
    return RegistryLogin(domain=cfg.registry_provider, username=cfg.registry_account, token=token)


def plan_job(
    rs: ResourceSet, name: str, values: Values, config: CoreConfig = DEFAULT_CONFIG
) -> JobPlan:
    """The job of stack ``name``; ``config`` gives the accounts, tokens and timeouts."""
    stack = rs.resources.get(("stack", name))
    if stack is None:
        raise JobError(f"no stack named {name!r} in the resources")
    cfg = stack.typed_config(StackConfig)
    where = f"stack {name!r}"
    if cfg.swarm:
        swarm = rs.resources.get(("swarm", cfg.swarm))
        if swarm is None:
            raise JobError(f"{where}: swarm {cfg.swarm!r} is not a [[swarm]] here")
        sc = swarm.typed_config(SwarmConfig)
        if not sc.servers:
            raise JobError(f"swarm {cfg.swarm!r}: list its manager servers in servers = [...]")
        mode, servers = DeployMode.SWARM, tuple(sc.servers)
    elif cfg.server:
        mode, servers = DeployMode.COMPOSE, (cfg.server,)
    else:
        raise JobError(f"{where}: set server (Compose) or swarm (Swarm)")

    def interp(text: str, field: str) -> str:
        if cfg.skip_secret_interp:
            return text
        return values.interpolate(text, where=f"{where} {field}")

    try:
        variables = parse_environment(interp(cfg.environment, "environment"))
    except EnvironmentLineError as exc:  # the line quoted is interpolated: mask it
        raise JobError(f"{where}: {values.mask(str(exc))}") from None
    source = source_of(rs, stack, values, config)
    kind = source_kind(cfg)
    job = StackJob(
        name=name,
        mode=mode,
        server=servers[0],
        repo_url="",
        commit="",
        project=cfg.project_name,
        run_directory=cfg.run_directory,
        files=tuple(cfg.compose_files()),
        env_files=tuple(f.path for f in cfg.additional_env_files),
        pre_deploy=_steps(cfg.pre_deploy, interp, "pre_deploy", mode),
        post_deploy=_steps(cfg.post_deploy, interp, "post_deploy", mode),
        auto_pull=cfg.auto_pull,
        ignore_services=tuple(cfg.ignore_services),
        health_wait=cfg.health.wait,
        health_timeout=float(cfg.health.timeout),
        source=kind,
        env_file_path=cfg.env_file_path,
        env_file=env_file_text(variables),
        file_contents=(
            interp(command_text(cfg.file_contents), "file_contents")
            if kind is StackSource.FILE_CONTENTS
            else ""
        ),
        required_files=required_files(cfg),
        extra_args=tuple(interp(a, "extra_args") for a in cfg.extra_args),
        destroy_before_deploy=cfg.destroy_before_deploy,
        credentials=source.credentials if source is not None else None,
        registry=registry_login(config, cfg, where),
        pre_deploy_timeout=config.pre_deploy_timeout,
        post_deploy_timeout=config.post_deploy_timeout,
        networks=tuple(config.external_networks),
        external_secrets=tuple(
            (secret, config.secrets[key]) for secret, key in sorted(config.external_secrets.items())
        ),
    )
    return JobPlan(
        job=job,
        source=source,
        servers=servers,
        repo=repo_target_of(rs, stack, values),
    )


def _steps(
    commands: list[SystemCommand],
    interp: Callable[[str, str], str],
    field: str,
    mode: DeployMode,
) -> tuple[CommandStep, ...]:
    steps = []
    for command in commands:
        text = interp(command_text(command.command), f"{field}.command")
        if text:  # SystemCommand::is_none: an empty command does not run
            shell_mode = command.shell_mode and mode is DeployMode.COMPOSE
            steps.append(CommandStep(text, command.path, shell_mode))
    return tuple(steps)
