"""Komodo's Repo: a working clone kept at a path on the host and moved to each synced commit.

The path comes from the resource file (``[[repo]] config.path``): absolute paths are used as
given (the reference homelab points pre-deploy scripts into such a clone), relative ones stay
under the agent's root. An existing directory that is not a clone of the same repository (a
directory with other files, or a clone whose ``origin`` is another URL) is refused before
anything in it is touched.
"""

from __future__ import annotations

from pathlib import Path

from periphery.exceptions import CheckoutError, ForbiddenPath
from periphery.ops.checkout import git_env, redact
from periphery.ops.locks import file_lock
from periphery.paths import commit_id, repo_path
from periphery.process import Emit, capture, run
from protocol.messages import GitCredentials

GIT_TIMEOUT = 300.0
LOCK_TIMEOUT = 600.0  # waiting for another sync of the same clone


async def _git(argv: list[str], emit: Emit, what: str, env: dict[str, str] | None = None) -> None:
    done = await run(["git", *argv], emit=emit, time_limit=GIT_TIMEOUT, env=env or git_env())
    if done.returncode != 0:
        raise CheckoutError(done.summary(what))


async def sync_repo(
    root: Path,
    url: str,
    commit: str,
    path: str,
    emit: Emit,
    credentials: GitCredentials | None = None,
) -> Path:
    """Clone ``url`` at ``path`` the first time, then fetch, and check ``commit`` out. One
    sync of a clone at a time (a deploy's and a ``pull``'s may arrive together)."""
    sha = commit_id(commit)
    dest = repo_path(root, path)
    shown = redact(url)
    if url.startswith("-"):
        raise CheckoutError(f"refusing a repository starting with '-': {shown}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    async with file_lock(dest.parent / f".{dest.name}.stackward-lock", LOCK_TIMEOUT):
        await _sync(dest, url, sha, shown, emit, git_env(url, credentials))
    return dest


def _is_clone(dest: Path) -> bool:
    """Whether ``dest`` is a clone; raises when it is a directory with something else in it."""
    if (dest / ".git").is_dir():
        return True
    if dest.exists() and any(dest.iterdir()):
        raise ForbiddenPath(f"{dest} exists and is not a git clone: not overwriting it")
    return False


def same_repository(a: str, b: str) -> bool:
    """Whether two remote URLs name one repository (``x``, ``x/`` and ``x.git`` do, with or
    without a user in the URL)."""

    def norm(url: str) -> str:
        url = redact(url.strip()).replace("***@", "").rstrip("/")
        return url[: -len(".git")] if url.endswith(".git") else url

    return norm(a) == norm(b)


async def _check_origin(dest: Path, url: str, shown: str) -> None:
    """Refuse a clone of another repository (its local changes would be lost to the checkout)."""
    found = await capture(
        ["git", "-C", str(dest), "config", "--get", "remote.origin.url"],
        time_limit=GIT_TIMEOUT,
        env=git_env(),
    )
    origin = found.stdout.decode("utf-8", "replace").strip()
    if found.returncode != 0 or not same_repository(origin, url):
        what = f"a clone of {redact(origin)}" if origin else "a clone with no origin"
        raise ForbiddenPath(
            f"{dest} is {what}, not of {shown}: not touching it (move it away, or give the"
            " [[repo]] another path)"
        )


async def _sync(
    dest: Path, url: str, sha: str, shown: str, emit: Emit, env: dict[str, str]
) -> None:
    if not _is_clone(dest):
        await _git(["clone", "--quiet", "--", url, str(dest)], emit, f"cloning {shown}", env)
    else:
        await _check_origin(dest, url, shown)
        await _git(
            ["-C", str(dest), "remote", "set-url", "origin", url], emit, "setting origin", env
        )
        await _git(
            ["-C", str(dest), "fetch", "--quiet", "--prune", "origin"],
            emit,
            f"fetching {shown}",
            env,
        )
    try:
        await _git(
            ["-C", str(dest), "checkout", "--quiet", "--force", "--detach", sha],
            emit,
            f"checking out {sha[:12]}",
        )
    except CheckoutError:
        await _git(
            ["-C", str(dest), "fetch", "--quiet", "origin", sha], emit, f"fetching {sha[:12]}", env
        )
        await _git(
            ["-C", str(dest), "checkout", "--quiet", "--force", "--detach", sha],
            emit,
            f"checking out {sha[:12]}",
        )
