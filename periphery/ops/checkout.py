"""Check a repository out at one commit into the stack's fixed directory under the root.

Komodo deploys a stack from one clone at a fixed path, moved from commit to commit (``git
pull``, ``git reset --hard``). So does this, without a clone per stack: a bare mirror per
repository URL, and a private index per stack whose work tree is the stack's directory.

Layout under ``root``::

    .mirrors/<safe-url>-<hash>/               a bare mirror per repository URL, fetched as needed
    .mirrors/<...>.lock                       serialises fetches of one mirror
    <target>/                                 the checkout: the commit's files, at a fixed path
    .stackward/checkouts/<target>.index       its git index (what git wrote there)
    .stackward/checkouts/<target>.commit      the commit it holds
    .stackward/checkouts/<target>.lock        serialises checkouts of one target

Moving to a commit is ``git read-tree --reset -u``: files that changed are rewritten, files that
went are removed, files git does not track (an ``.env`` written for the deploy, a bind mount's
data) stay, and a file whose contents did not change is left as it is. So a service whose
definition did not change is not restarted by a deploy at a new commit: its bind mounts'
sources keep their paths. A tracked symlink that leads outside the checkout is refused and the
previous commit put back before anything runs.

A token (``GitCredentials``) reaches git through ``protocol.gitauth``'s credential helper only.
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
from periphery.paths import STATE, commit_id, safe_name
from periphery.process import Emit, base_env, capture, note, run, shown
from protocol.gitauth import credential_env
from protocol.messages import GitCredentials

log = logging.getLogger(__name__)

MIRRORS = ".mirrors"
GIT_TIMEOUT = 300.0
LOCK_TIMEOUT = 600.0
QUERY_TIMEOUT = 30.0
SYMLINK_MODE = "120000"


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


def git_env(url: str = "", credentials: GitCredentials | None = None) -> dict[str, str]:
    """Never prompt: no terminal, no askpass, ssh in batch mode (unless the agent set its own);
    with ``credentials``, the credential helper for ``url``."""
    extra = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
    extra["GIT_SSH_COMMAND"] = os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    if "SSH_AUTH_SOCK" in os.environ:
        extra["SSH_AUTH_SOCK"] = os.environ["SSH_AUTH_SOCK"]
    if credentials is not None:
        extra.update(credential_env(url, credentials.username, credentials.token))
    return base_env(extra)


async def _git(
    mirror: Path,
    *args: str,
    emit: Emit,
    env: dict[str, str] | None = None,
    time_limit: float = GIT_TIMEOUT,
) -> None:
    argv = ["git", f"--git-dir={mirror}", *args]
    await note(emit, f"$ {shown([redact(a) for a in argv])}")
    try:
        done = await run(argv, emit=emit, time_limit=time_limit, env=env or git_env())
    except CommandFailed as exc:
        raise CheckoutError(str(exc)) from exc
    if done.returncode != 0:
        raise CheckoutError(done.summary(f"git {args[0]}"))


async def _has_commit(mirror: Path, sha: str) -> str | None:
    """The full id of ``sha`` when the mirror has that commit, else None."""
    argv = ["git", f"--git-dir={mirror}", "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}"]
    done = await capture(argv, time_limit=QUERY_TIMEOUT, env=git_env())
    if done.returncode != 0:
        return None
    return done.stdout.decode().strip() or None


async def ensure_mirror(
    root: Path,
    repo_url: str,
    sha: str,
    emit: Emit,
    credentials: GitCredentials | None = None,
) -> tuple[Path, str]:
    """The mirror of ``repo_url`` holding ``sha`` (cloned or fetched as needed), and its full id."""
    if repo_url.startswith("-") or not repo_url.strip():
        raise CheckoutError(f"repository URL {redact(repo_url)!r} is not usable")
    env = git_env(repo_url, credentials)
    mirrors = root / MIRRORS
    mirrors.mkdir(mode=0o700, exist_ok=True)
    mirror = mirrors / mirror_name(repo_url)
    async with file_lock(mirrors / f"{mirror.name}.lock", LOCK_TIMEOUT):
        if not mirror.exists():
            tmp = mirrors / f".{mirror.name}.{secrets.token_hex(4)}.tmp"
            try:
                await _git(tmp, "init", "--quiet", "--bare", emit=emit)
                await _git(
                    tmp, "remote", "add", "--mirror=fetch", "origin", "--", repo_url, emit=emit
                )
                await _git(tmp, "fetch", "--quiet", "--prune", "origin", emit=emit, env=env)
                os.rename(tmp, mirror)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        full = await _has_commit(mirror, sha)
        if full is None:
            await _git(mirror, "fetch", "--quiet", "--prune", "origin", emit=emit, env=env)
            full = await _has_commit(mirror, sha)
        if full is None:
            raise CheckoutError(f"commit {sha} is not in {redact(repo_url)}")
    return mirror, full


def _state(root: Path, target: str) -> tuple[Path, Path, Path]:
    """The index, commit and lock files of ``target``'s checkout (their directory made)."""
    state = root / STATE / "checkouts"
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    return state / f"{target}.index", state / f"{target}.commit", state / f"{target}.lock"


def _layout(root: Path, target: str) -> tuple[Path, Path]:
    """``root`` resolved (made) and ``root/target``, which may not be a symlink."""
    real_root = root.resolve()
    real_root.mkdir(parents=True, exist_ok=True)
    dest = real_root / target
    if dest.is_symlink():
        raise ForbiddenPath(f"{dest} is a symlink")
    return real_root, dest


def _forget_old_layout(dest: Path) -> None:
    """Before this layout, a target held ``commits/<sha>/`` and a ``current`` link: gone once
    (the files come back from git; nothing of the stack's own was kept there)."""
    current = dest / "current"
    if current.is_symlink() and os.readlink(current).startswith("commits/"):
        current.unlink()
        shutil.rmtree(dest / "commits", ignore_errors=True)


async def _move(mirror: Path, dest: Path, index: Path, sha: str, emit: Emit) -> None:
    """``read-tree --reset -u``: the work tree ``dest`` moved to ``sha`` through ``index``."""
    env = {**git_env(), "GIT_INDEX_FILE": str(index)}
    argv = ["git", f"--git-dir={mirror}", f"--work-tree={dest}", "read-tree", "--reset", "-u", sha]
    try:
        done = await run(argv, emit=emit, time_limit=GIT_TIMEOUT, env=env)
    except CommandFailed as exc:
        raise CheckoutError(str(exc)) from exc
    if done.returncode != 0:
        raise CheckoutError(done.summary(f"git read-tree {sha[:12]}"))


async def tracked_symlinks(mirror: Path, sha: str) -> list[str]:
    """The paths of the symlinks that commit ``sha`` tracks."""
    argv = ["git", f"--git-dir={mirror}", "ls-tree", "-r", "-z", "--full-tree", sha]
    done = await capture(argv, time_limit=QUERY_TIMEOUT, env=git_env())
    if done.returncode != 0:
        raise CheckoutError(f"git ls-tree {sha[:12]}: {done.stderr.decode(errors='replace')}")
    out = []
    for entry in done.stdout.split(b"\0"):
        meta, _, path = entry.partition(b"\t")
        if meta.split(b" ", 1)[0].decode() == SYMLINK_MODE:
            out.append(os.fsdecode(path))
    return out


def escaping_symlink(dest: Path, links: list[str]) -> str | None:
    """The first of ``links`` (relative to ``dest``) that resolves outside ``dest``."""
    real = dest.resolve()
    for link in links:
        path = dest / link
        if path.is_symlink() and not path.resolve().is_relative_to(real):
            return f"symlink {link} -> {os.readlink(path)} points outside the checkout"
    return None


async def checkout(
    root: Path,
    repo_url: str,
    commit: str,
    target: str,
    emit: Emit,
    credentials: GitCredentials | None = None,
) -> tuple[Path, str]:
    """Check ``repo_url`` out at ``commit`` into ``root/target`` (a fixed path); return that
    directory and the full commit id.

    Raises :class:`InvalidName` for a bad target or commit, :class:`ForbiddenPath` when the
    commit has a symlink leading outside the checkout (the previous commit is put back),
    :class:`CheckoutError` when git fails or the commit does not exist.
    """
    safe_name(target, "target")
    sha = commit_id(commit)
    real_root, dest = _layout(root, target)
    mirror, full = await ensure_mirror(real_root, repo_url, sha, emit, credentials)
    index, head, lock = _state(real_root, target)
    async with file_lock(lock, LOCK_TIMEOUT):
        dest.mkdir(mode=0o755, exist_ok=True)
        _forget_old_layout(dest)
        previous = head.read_text().strip() if head.is_file() else ""
        if previous == full and index.is_file():
            await note(emit, f"{target}: at {full[:12]} already")
        await _move(mirror, dest, index, full, emit)
        bad = escaping_symlink(dest, await tracked_symlinks(mirror, full))
        if bad is not None:
            await _put_back(mirror, dest, index, head, previous, emit)
            raise ForbiddenPath(bad)
        await anyio.to_thread.run_sync(head.write_text, full + "\n")
        await note(emit, f"{target}: checked out {full[:12]}")
    return dest, full


async def _put_back(
    mirror: Path, dest: Path, index: Path, head: Path, previous: str, emit: Emit
) -> None:
    """After a refused commit: the previous one back, or no tracked files at all."""
    if previous:
        await _move(mirror, dest, index, previous, emit)
        return
    empty_tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    env = {**git_env(), "GIT_INDEX_FILE": str(index)}
    argv = ["git", f"--git-dir={mirror}", f"--work-tree={dest}", "read-tree", "--reset", "-u"]
    await run([*argv, empty_tree], emit=emit, time_limit=GIT_TIMEOUT, env=env)
    await anyio.to_thread.run_sync(lambda: head.unlink(missing_ok=True))
