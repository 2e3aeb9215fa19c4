"""What each execution of a procedure does here, with the core's parts (passed in).

Komodo's meaning (``bin/core/src/api/execute/*.rs``), and how it is done here:

- ``DeployStack``: the stack is deployed, as an intent (source ``procedure``) for the reconciler,
  which owns every deploy; the execution waits for the stack's result in the run that carries
  it and fails unless it is healthy. ``services`` is read but the whole stack deploys.
- ``DeployStackIfChanged``: Komodo refreshes the stack's files and deploys when they differ
  from the deployed ones. Here: the stack's branch head is looked up (its mirror fetched, the
  head recorded), and the stack deploys when the reconciler says it is not converged
  (``AppliedState.verdicts``); otherwise nothing runs and the execution succeeds.
- ``RunSync``: the sync is planned and applied (``SyncRunner``), and the deploys the apply
  asked for are waited for; any that is not healthy fails the execution.
- ``PullRepo`` / ``CloneRepo``: a ``[[repo]]`` with a server and a path: its clone there is moved
  to the branch head (``RepoSync``).
- ``StartStack``, ``StopStack``, ``RestartStack``, ``PauseStack``, ``UnpauseStack``,
  ``PullStack``, ``DestroyStack``: on a Compose stack, the compose command on its server
  (``StackControl``); on a Swarm stack only ``DestroyStack`` means something (``docker stack
  rm``), the others fail with Komodo's message. A stack being deployed is refused.
- ``Sleep``: waits ``duration_ms``.
- ``BackupCoreDatabase``, ``RotateAllServerKeys``, ``GlobalAutoUpdate``: the callables the
  composition root passes in (core.automation.backup, core.automation.keys, image updates).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from core.automation import executions as ex
from core.config import CoreConfig
from core.deploy.jobs import JobError, source_kind, source_of, values_of
from core.exceptions import CoreError, PeripheryUnavailable, StoreError
from core.git import GitError, resolve_branch, update_mirror
from core.pool import PeripheryPool
from core.reconcile.desired import AppliedState, stack_mirror, typed
from core.reconcile.reconciler import Intent, Reconciler, Refused
from core.repos import repo_url
from core.resources.models import StackConfig
from core.store import Store
from core.store.intents import Heads
from core.syncing import SyncRunner
from protocol.exceptions import ChannelError
from protocol.messages import RepoSync, StackControl, SwarmRemove

log = logging.getLogger(__name__)

Say = Callable[[str], Awaitable[None]]
CHANNEL_WAIT = 15.0
CONTROL_TIMEOUT = 900.0

_ACTIONS: dict[type[Any], str] = {
    ex.StartStack: "start",
    ex.StopStack: "stop",
    ex.RestartStack: "restart",
    ex.PauseStack: "pause",
    ex.UnpauseStack: "unpause",
    ex.PullStack: "pull",
    ex.DestroyStack: "down",
}


class StepFailed(CoreError):
    """An execution that ran and failed (the message says why)."""


async def _no_backup(say: Say) -> None:
    raise StepFailed("BackupCoreDatabase: no backup is possible in this core")


async def _no_rotation(say: Say) -> None:
    raise StepFailed("RotateAllServerKeys: the core has no private_key: no agents to rotate")


async def no_global_auto_update(skip_auto_update: bool) -> list[str]:
    """The stand-in until image updates are in this build (issue 14, helper "updates")."""
    log.warning("GlobalAutoUpdate: image updates are not in this build; nothing checked")
    return ["image updates are not in this build: no stack was checked for newer images"]


class Steps:
    def __init__(
        self,
        config: CoreConfig,
        store: Store,
        desired: AppliedState,
        heads: Heads,
        syncs: SyncRunner,
        reconciler: Reconciler | None,
        pool: PeripheryPool | None,
        *,
        backup: Callable[[Say], Awaitable[None]] = _no_backup,
        rotate_keys: Callable[[Say], Awaitable[None]] = _no_rotation,
        global_auto_update: Callable[[bool], Awaitable[list[str]]] = no_global_auto_update,
    ) -> None:
        self.config = config
        self.store = store
        self.desired = desired
        self.heads = heads
        self.syncs = syncs
        self.reconciler = reconciler
        self.pool = pool
        self.backup = backup
        self.rotate_keys = rotate_keys
        self.global_auto_update = global_auto_update
        self._mirrors: dict[str, anyio.Lock] = {}  # one fetch of a mirror at a time

    async def names(self, kind: str) -> list[str]:
        """The applied resources of ``kind``, by name (what a batch pattern selects from)."""
        stored = await anyio.to_thread.run_sync(self.store.resources)
        return sorted(name for (k, name) in stored if k == kind)

    async def run(self, step: ex.Step, reason: str, say: Say) -> None:
        """Do one (expanded) execution. Raises :class:`StepFailed` with why."""
        match step:
            case ex.Nothing():
                return
            case ex.Sleep(duration_ms=ms):
                await anyio.sleep(ms / 1000)
            case ex.DeployStack(stack=stack, services=services):
                if services:
                    await say(
                        f"{stack}: services {', '.join(services)} asked for; stackward deploys"
                        " the whole stack"
                    )
                await self._deploy(stack, reason, say)
            case ex.DeployStackIfChanged(stack=stack):
                await self._deploy_if_changed(stack, reason, say)
            case ex.RunSync(sync=sync, resource_type=rtype, resources=resources):
                if rtype or resources:
                    await say(f"sync {sync}: resource_type/resources are read past: all of it runs")
                await self._run_sync(sync, say)
            case ex.PullRepo(repo=repo) | ex.CloneRepo(repo=repo):
                await self._pull_repo(repo, say)
            case (
                ex.StartStack()
                | ex.StopStack()
                | ex.RestartStack()
                | ex.PauseStack()
                | ex.UnpauseStack()
                | ex.PullStack()
                | ex.DestroyStack()
            ):
                await self._control(step, say)
            case ex.BackupCoreDatabase():
                await self.backup(say)
            case ex.RotateAllServerKeys():
                await self.rotate_keys(say)
            case ex.GlobalAutoUpdate(skip_auto_update=skip):
                try:
                    lines = await self.global_auto_update(skip)
                except CoreError as exc:
                    raise StepFailed(f"GlobalAutoUpdate: {exc}") from exc
                for line in lines:
                    await say(line)
            case _:
                raise StepFailed(f"{step.describe()}: not expanded (a bug: batches expand first)")

    # ------------------------------------------------------------------------------ deploys

    def _reconciler(self) -> Reconciler:
        if self.reconciler is None:
            raise StepFailed("deploys are off: the core has no private_key")
        return self.reconciler

    async def _deploy(self, stack: str, reason: str, say: Say) -> None:
        reconciler = self._reconciler()
        try:
            admission = await reconciler.submit(Intent([stack], "procedure", reason))
        except (Refused, StoreError) as exc:
            raise StepFailed(f"{stack}: {exc}") from exc
        run = admission.runs.get(stack)
        await say(f"{stack}: deploying (run {run})")
        results = await reconciler.outcomes(admission)
        status, why = results.get(stack, ("failed", "no result"))
        if status != "healthy":
            raise StepFailed(f"{stack} {status} (run {run})" + (f": {why}" if why else ""))
        await say(f"{stack}: healthy (run {run})")

    async def _deploy_if_changed(self, stack: str, reason: str, say: Say) -> None:
        self._reconciler()
        await self._refresh_head(stack)
        verdicts = await anyio.to_thread.run_sync(self.desired.verdicts, [stack])
        verdict = verdicts.get(stack)
        if verdict is None:
            raise StepFailed(f"{stack}: no stack of that name is applied")
        if verdict.converged:
            await say(f"{stack}: no changes (converged): nothing to deploy")
            return
        await say(f"{stack}: {'; '.join(verdict.reasons) or 'not converged'}")
        await self._deploy(stack, reason, say)

    async def _refresh_head(self, stack: str) -> None:
        """Komodo's ``RefreshStackCache`` before the check: the head of the stack's branch,
        fetched into its mirror and recorded (a stack of its sync's own repository moves with
        the sync: RunSync)."""
        stored = await anyio.to_thread.run_sync(self.store.resources)
        entry = stored.get(("stack", stack))
        if entry is None:
            raise StepFailed(f"{stack}: no stack of that name is applied")
        rs = typed(stored)
        res = rs.resources.get(("stack", stack))
        if res is None:
            return
        try:
            src = source_of(rs, res, values_of(rs, self.config.secrets), self.config)
        except (JobError, CoreError):
            return  # the deploy says what is wrong with it
        if src is None or src.commit:
            return  # not from git, or pinned: nothing can have moved
        try:
            sync_url, sync_branch = await anyio.to_thread.run_sync(
                self.syncs.syncs.repository_of, entry.sync
            )
        except CoreError:
            sync_url, sync_branch = "", ""
        if (sync_url, sync_branch) == (src.url, src.branch):
            return
        try:
            head = await resolve_branch(src.url, src.branch, credentials=src.credentials)
            mirror = stack_mirror(self.config.data_dir, src.url)
            async with self._mirrors.setdefault(src.url, anyio.Lock()):
                await anyio.to_thread.run_sync(update_mirror, src.url, mirror, src.credentials)
            await anyio.to_thread.run_sync(self.heads.set, src.url, src.branch, head, "procedure")
        except (GitError, StoreError) as exc:
            raise StepFailed(f"{stack}: cannot look at its repository: {exc}") from exc

    async def _run_sync(self, sync: str, say: Say) -> None:
        try:
            plan = await self.syncs.plan(sync)
        except CoreError as exc:
            raise StepFailed(f"sync {sync}: {exc}") from exc
        if not (plan.changes or plan.deploys):
            await say(f"sync {sync}: nothing to change (plan {plan.id})")
            return
        counts = ", ".join(f"{n} {k}" for k, n in plan.counts().items() if n)
        await say(f"sync {sync}: plan {plan.id}: {counts or 'deploys only'}")
        try:
            applied = await self.syncs.apply(sync, plan.id, "procedure")
        except CoreError as exc:
            raise StepFailed(f"sync {sync}: {exc}") from exc
        if applied.deploy_error:
            raise StepFailed(f"sync {sync}: the deploys did not start: {applied.deploy_error}")
        if applied.admission is None:
            await say(f"sync {sync}: applied (revision {applied.revision})")
            return
        reconciler = self._reconciler()
        await say(
            f"sync {sync}: applied; deploying "
            + ", ".join(f"{s} (run {r})" for s, r in sorted(applied.admission.runs.items()))
        )
        results = await reconciler.outcomes(applied.admission)
        bad = {s: r for s, r in results.items() if r[0] != "healthy"}
        for stack, (status, _) in sorted(results.items()):
            await say(f"  {stack}: {status}")
        if bad:
            raise StepFailed(
                f"sync {sync}: "
                + "; ".join(f"{s} {st}" + (f": {w}" if w else "") for s, (st, w) in bad.items())
            )

    # --------------------------------------------------------------------------- on hosts

    async def _pull_repo(self, repo: str, say: Say) -> None:
        stored = await anyio.to_thread.run_sync(self.store.resources)
        entry = stored.get(("repo", repo))
        if entry is None:
            raise StepFailed(f"repo {repo}: no repo of that name is applied")
        cfg: dict[str, Any] = entry.config.get("config", {})
        server, path, url = str(cfg.get("server", "")), str(cfg.get("path", "")), repo_url(cfg)
        branch = str(cfg.get("branch") or "main")
        if not (server and path and url):
            raise StepFailed(
                f"repo {repo}: it needs a server, a path and a repository to have a clone to pull"
            )
        try:
            commit = str(cfg.get("commit") or "") or await resolve_branch(url, branch)
        except GitError as exc:
            raise StepFailed(f"repo {repo}: {exc}") from exc
        pool = self._pool()
        try:
            channel = await pool.channel(server, CHANNEL_WAIT)
            result, output = await channel.request(RepoSync(url=url, commit=commit, path=path))
        except (PeripheryUnavailable, ChannelError) as exc:
            raise StepFailed(f"repo {repo}: server {server!r}: {exc}") from exc
        if result.error is not None:
            raise StepFailed(f"repo {repo}: {result.error.message}")
        await say(f"repo {repo}: {path} on {server} at {branch} {commit[:12]}")

    def _pool(self) -> PeripheryPool:
        if self.pool is None:
            raise StepFailed("the core has no private_key: it reaches no agent")
        return self.pool

    async def _control(self, step: ex.Step, say: Say) -> None:
        stack = str(getattr(step, "stack", ""))
        action = _ACTIONS[type(step)]
        stored = await anyio.to_thread.run_sync(self.store.resources)
        entry = stored.get(("stack", stack))
        if entry is None:
            raise StepFailed(f"{stack}: no stack of that name is applied")
        try:
            cfg = msgspec.convert(entry.config.get("config", {}), StackConfig)
        except msgspec.ValidationError as exc:
            raise StepFailed(f"{stack}: its stored config: {exc}") from exc
        if self.reconciler is not None and stack in self.reconciler.busy():
            raise StepFailed(f"{stack}: it is being deployed; {action} refused")
        services = list(getattr(step, "services", []) or [])
        project = cfg.project_name or stack
        if cfg.swarm:
            if action != "down":
                raise StepFailed(
                    f"{stack}: Compose executions (Start, Stop, Restart, Pause, Pull) should not"
                    " be called for Stack in Swarm Mode"
                )
            if services:
                raise StepFailed(
                    f"{stack}: Cannot destroy specific Stack services when in Swarm mode."
                )
            swarm = stored.get(("swarm", cfg.swarm))
            servers = list(swarm.config.get("config", {}).get("servers", [])) if swarm else []
            command: SwarmRemove | StackControl = SwarmRemove(stack=project)
        else:
            servers = [cfg.server] if cfg.server else []
            command = StackControl(
                project=project,
                action=action,
                services=services,
                stop_time=getattr(step, "stop_time", None),
                remove_orphans=bool(getattr(step, "remove_orphans", False)),
                target=stack,
                run_directory=cfg.run_directory,
                files=cfg.compose_files(),
                env_files=[f.path for f in cfg.additional_env_files],
                env_file_path=cfg.env_file_path if cfg.environment.strip() else "",
                source=source_kind(cfg),
            )
        if not servers:
            raise StepFailed(f"{stack}: no server or swarm to run it on")
        server = self._pick(servers)
        pool = self._pool()
        lines: list[str] = []
        try:
            channel = await pool.channel(server, CHANNEL_WAIT)
            with anyio.fail_after(CONTROL_TIMEOUT):
                result, output = await channel.request(command)
        except TimeoutError as exc:
            raise StepFailed(f"{stack}: {action} took longer than {CONTROL_TIMEOUT:g}s") from exc
        except (PeripheryUnavailable, ChannelError) as exc:
            raise StepFailed(f"{stack}: server {server!r}: {exc}") from exc
        for chunk in output:
            lines.extend(bytes(chunk.data).decode("utf-8", "replace").splitlines())
        for line in lines[-40:]:
            await say(f"  {stack} | {line}")
        if result.error is not None:
            raise StepFailed(f"{stack}: {action}: {result.error.message}")
        if result.exit_code not in (0, None):
            raise StepFailed(f"{stack}: {action} exited {result.exit_code}")
        what = "docker stack rm" if cfg.swarm else f"compose {action}"
        await say(f"{stack}: {what} on {server}: done")

    def _pick(self, servers: list[str]) -> str:
        connected = self.pool.connected() if self.pool is not None else {}
        return next((s for s in servers if s in connected), servers[0])
