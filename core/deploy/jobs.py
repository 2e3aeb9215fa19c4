"""From resources to deploy jobs: where each stack's files come from, which servers may run it,
and its environment with ``[[NAME]]`` interpolated. Pure (the commit is resolved elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass

from core.deploy.environment import parse_environment
from core.deploy.stack import PreDeployStep, StackJob
from core.exceptions import CoreError
from core.git import provider_url
from core.resources.models import RepoConfig, Resource, ResourceSet, StackConfig, SwarmConfig
from core.resources.variables import Values
from protocol.messages import DeployMode


class JobError(CoreError):
    """A stack cannot be deployed as configured (the message says what to change)."""


@dataclass(frozen=True)
class Source:
    url: str
    branch: str
    commit: str  # pinned in the resource, or "" for the branch's head


@dataclass(frozen=True)
class RepoTarget:
    """A ``[[repo]]`` with a server and a path: that periphery keeps a clone there, moved to
    the synced commit before the stacks that link it deploy."""

    name: str
    server: str
    path: str


@dataclass(frozen=True)
class JobPlan:
    """A stack's job without its commit, and the servers that may run it, in preference order."""

    job: StackJob
    source: Source
    servers: tuple[str, ...]
    repo: RepoTarget | None = None


def repo_target_of(rs: ResourceSet, stack: Resource, values: Values) -> RepoTarget | None:
    cfg: StackConfig = stack.config
    if not cfg.linked_repo:
        return None
    repo = rs.resources.get(("repo", cfg.linked_repo))
    if repo is None:
        return None
    rc: RepoConfig = repo.config
    if not rc.server or not rc.path:
        return None
    path = values.interpolate(rc.path, where=f"repo {repo.name!r} path")
    return RepoTarget(repo.name, rc.server, path)


def values_of(rs: ResourceSet, secrets: dict[str, str]) -> Values:
    variables = {r.name: r.config.value for r in rs.of_kind("variable")}
    secret_names = [r.name for r in rs.of_kind("variable") if r.config.is_secret]
    return Values(variables, secrets, secret_names)


def source_of(rs: ResourceSet, stack: Resource, values: Values) -> Source:
    cfg: StackConfig = stack.config
    where = f"stack {stack.name!r}"
    if cfg.linked_repo:
        repo = rs.resources.get(("repo", cfg.linked_repo))
        if repo is None:
            raise JobError(f"{where}: linked_repo {cfg.linked_repo!r} is not a [[repo]] here")
        rc: RepoConfig = repo.config
        if rc.url:
            url = values.interpolate(rc.url, where=f"repo {repo.name!r} url")
        elif rc.repo:
            url = provider_url(rc.git_provider, rc.git_https, rc.repo)
        else:
            raise JobError(f"repo {repo.name!r}: set url (or git_provider and repo)")
        return Source(url, rc.branch or "main", rc.commit)
    if cfg.repo:
        return Source(
            provider_url(cfg.git_provider, cfg.git_https, cfg.repo), cfg.branch, cfg.commit
        )
    raise JobError(
        f"{where}: no repository: set linked_repo (a [[repo]]) or repo; files on the host and"
        " file_contents are not supported yet"
    )


def plan_job(rs: ResourceSet, name: str, values: Values) -> JobPlan:
    stack = rs.resources.get(("stack", name))
    if stack is None:
        raise JobError(f"no stack named {name!r} in the resources")
    cfg: StackConfig = stack.config
    where = f"stack {name!r}"
    if cfg.swarm:
        swarm = rs.resources.get(("swarm", cfg.swarm))
        if swarm is None:
            raise JobError(f"{where}: swarm {cfg.swarm!r} is not a [[swarm]] here")
        sc: SwarmConfig = swarm.config
        if not sc.servers:
            raise JobError(f"swarm {cfg.swarm!r}: list its manager servers in servers = [...]")
        mode, servers = DeployMode.SWARM, tuple(sc.servers)
    elif cfg.server:
        mode, servers = DeployMode.COMPOSE, (cfg.server,)
    else:
        raise JobError(f"{where}: set server (Compose) or swarm (Swarm)")
    try:
        env = parse_environment(values.interpolate(cfg.environment, where=f"{where} environment"))
    except ValueError as exc:
        raise JobError(f"{where}: {exc}") from exc
    pre = tuple(
        PreDeployStep(
            command=values.interpolate(p.command, where=f"{where} pre_deploy"),
            path=values.interpolate(p.path, where=f"{where} pre_deploy.path"),
        )
        for p in cfg.pre_deploy
        if p.command.strip()
    )
    job = StackJob(
        name=name,
        mode=mode,
        server=servers[0],
        repo_url="",
        commit="",
        project=cfg.project_name,
        run_directory=cfg.run_directory,
        files=tuple(cfg.file_paths),
        env=env,
        env_files=tuple(f.path for f in cfg.additional_env_files),
        pre_deploy=pre,
        auto_pull=cfg.auto_pull,
        ignore_services=tuple(cfg.ignore_services),
        health_wait=cfg.health.wait,
        health_timeout=float(cfg.health.timeout),
    )
    return JobPlan(
        job=job,
        source=source_of(rs, stack, values),
        servers=servers,
        repo=repo_target_of(rs, stack, values),
    )
