"""Check a repository out at one commit under the agent's root directory.

Layout under ``root``::

    .mirrors/<safe-url>-<hash>/        a bare mirror per repository URL, fetched when needed
    .mirrors/<...>.lock                serialises fetches of one mirror
    <target>/commits/<sha>/            the files of the commit (no .git), made once, then reused
    <target>/current -> commits/<sha>  switched atomically (a new link renamed over the old)
    <target>/.lock                     serialises checkouts of one target

A commit directory is written under a temporary name and renamed into place, so an existing one is
always complete. A tree with a symlink leading outside itself is refused and removed before
``current`` moves. Older commit directories beyond the newest :data:`KEEP_COMMITS` are pruned.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
from pathlib import Path

import anyio

from periphery.exceptions import CheckoutError, CommandFailed, ForbiddenPath
from periphery.ops.locks import file_lock
from periphery.ops.paths import commit_id, refuse_escaping_symlinks, safe_name
from periphery.ops.process import Emit, base_env, capture, note, run, shown

log = logging.getLogger(__name__)

MIRRORS = ".mirrors"
KEEP_COMMITS = 3
GIT_TIMEOUT = 300.0
LOCK_TIMEOUT = 600.0
QUERY_TIMEOUT = 30.0


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


def redact(repo_url: str) -> str:
    """``repo_url`` without credentials (``https://user:token@host/x`` -> ``https://***@host/x``)."""
    return _USERINFO.sub(r"\1***@", repo_url)


def mirror_name(repo_url: str) -> str:
    """A directory name for ``repo_url``: readable tail plus a hash, so distinct URLs differ."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", redact(repo_url).replace("***@", ""))
    readable = readable.strip("._-")[-60:].lstrip("._-")
    digest = hashlib.sha256(repo_url.encode()).hexdigest()[:12]
    return f"{readable or 'repo'}-{digest}"


def _git_env() -> dict[str, str]:
    """Never prompt: no terminal, no askpass, ssh in batch mode (unless the agent set its own)."""
    extra = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
    extra["GIT_SSH_COMMAND"] = os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return base_env(extra)


async def _git(
    mirror: Path, *args: str, emit: Emit, url: str = "", time_limit: float = GIT_TIMEOUT
) -> None:
    argv = ["git", f"--git-dir={mirror}", *args]
    shown_argv = [redact(a) if a == url else a for a in argv] if url else argv
    await note(emit, f"$ {shown(shown_argv)}")
    try:
        done = await run(argv, emit=emit, time_limit=time_limit, env=_git_env())
    except CommandFailed as exc:
        raise CheckoutError(str(exc)) from exc
    if done.returncode != 0:
        raise CheckoutError(done.summary(f"git {args[0]}"))


async def _has_commit(mirror: Path, sha: str) -> str | None:
    """The full id of ``sha`` when the mirror has that commit, else None."""
    argv = ["git", f"--git-dir={mirror}", "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}"]
    done = await capture(argv, time_limit=QUERY_TIMEOUT, env=_git_env())
    if done.returncode != 0:
        return None
    return done.stdout.decode().strip() or None


async def _ensure_mirror(root: Path, repo_url: str, sha: str, emit: Emit) -> tuple[Path, str]:
    """The mirror of ``repo_url`` holding ``sha`` (cloned or fetched as needed), and its full id."""
    if repo_url.startswith("-") or not repo_url.strip():
        raise CheckoutError(f"repository URL {redact(repo_url)!r} is not usable")
    mirrors = root / MIRRORS
    mirrors.mkdir(mode=0o700, exist_ok=True)
    mirror = mirrors / mirror_name(repo_url)
    async with file_lock(mirrors / f"{mirror.name}.lock", LOCK_TIMEOUT):
        if not mirror.exists():
            tmp = mirrors / f".{mirror.name}.{secrets.token_hex(4)}.tmp"
            try:
                await _git(tmp, "init", "--quiet", "--bare", emit=emit)
                await _git(
                    tmp,
                    "remote",
                    "add",
                    "--mirror=fetch",
                    "origin",
                    "--",
                    repo_url,
                    emit=emit,
                    url=repo_url,
                )
                await _git(tmp, "fetch", "--quiet", "--prune", "origin", emit=emit)
                os.rename(tmp, mirror)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        full = await _has_commit(mirror, sha)
        if full is None:
            await _git(mirror, "fetch", "--quiet", "--prune", "origin", emit=emit)
            full = await _has_commit(mirror, sha)
        if full is None:
            raise CheckoutError(f"commit {sha} is not in {redact(repo_url)}")
    return mirror, full


async def _export(mirror: Path, sha: str, dest: Path, emit: Emit) -> None:
    """Write the files of commit ``sha`` into the new directory ``dest`` (a private index)."""
    _mkdir(dest)
    index = dest.with_name(dest.name + ".index")
    env = {**_git_env(), "GIT_INDEX_FILE": str(index)}
    try:
        for args in (
            ("read-tree", sha),
            (f"--work-tree={dest}", "checkout-index", "--all", "--force"),
        ):
            argv = ["git", f"--git-dir={mirror}", *args]
            done = await run(argv, emit=emit, time_limit=GIT_TIMEOUT, env=env)
            if done.returncode != 0:
                raise CheckoutError(done.summary(shown(argv)))
    except CommandFailed as exc:
        raise CheckoutError(str(exc)) from exc
    finally:
        index.unlink(missing_ok=True)


def _switch_current(target_dir: Path, sha: str) -> None:
    link = target_dir / f".current.{secrets.token_hex(4)}"
    os.symlink(f"commits/{sha}", link)
    try:
        os.replace(link, target_dir / "current")
    except BaseException:
        link.unlink(missing_ok=True)
        raise


def _prune(commits: Path, keep: set[str]) -> None:
    dirs = sorted(
        (
            p
            for p in commits.iterdir()
            if not p.name.startswith(".") and p.is_dir() and not p.is_symlink()
        ),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in dirs[KEEP_COMMITS:]:
        if old.name not in keep:
            log.info("pruning old checkout %s", old)
            shutil.rmtree(old, ignore_errors=True)


def _mkdir(path: Path) -> None:
    path.mkdir(mode=0o755)


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _reuse(dest: Path) -> bool:
    """True when the commit directory already exists (it is complete: it was renamed in)."""
    if dest.is_dir() and not dest.is_symlink():
        os.utime(dest)  # keeps it among the newest for pruning
        return True
    return False


def _layout(root: Path, target: str) -> tuple[Path, Path, Path]:
    """``root`` resolved, ``root/target`` and ``root/target/commits`` (made; both confined)."""
    real_root = root.resolve()
    real_root.mkdir(parents=True, exist_ok=True)
    target_dir = real_root / target
    if target_dir.is_symlink():
        raise ForbiddenPath(f"{target_dir} is a symlink")
    commits = target_dir / "commits"
    commits.mkdir(parents=True, exist_ok=True)
    if commits.is_symlink() or not commits.resolve().is_relative_to(real_root):
        raise ForbiddenPath(f"{commits} leads outside {real_root}")
    return real_root, target_dir, commits


async def checkout(root: Path, repo_url: str, commit: str, target: str, emit: Emit) -> Path:
    """Check ``repo_url`` out at ``commit`` into ``root/target/commits/<sha>``, then point
    ``current`` at it.

    Returns the commit directory. Raises :class:`InvalidName` for a bad target or commit,
    :class:`ForbiddenPath` when the tree has a symlink leading outside it (nothing is switched),
    :class:`CheckoutError` when git fails or the commit does not exist.
    """
    safe_name(target, "target")
    sha = commit_id(commit)
    real_root, target_dir, commits = _layout(root, target)

    mirror, full = await _ensure_mirror(real_root, repo_url, sha, emit)
    async with file_lock(target_dir / ".lock", LOCK_TIMEOUT):
        dest = commits / full
        if _reuse(dest):
            await note(emit, f"commit {full[:12]} already checked out")
        else:
            tmp = commits / f".{full}.{secrets.token_hex(4)}.tmp"
            try:
                await _export(mirror, full, tmp, emit)
                await anyio.to_thread.run_sync(refuse_escaping_symlinks, tmp)
                os.rename(tmp, dest)
            finally:
                await anyio.to_thread.run_sync(_remove_tree, tmp)
        await anyio.to_thread.run_sync(refuse_escaping_symlinks, dest)
        _switch_current(target_dir, full)
        await note(emit, f"{target}: current -> {full[:12]}")
        _prune(commits, keep={full})
    return dest
