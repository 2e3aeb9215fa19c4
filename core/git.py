"""The core's own git: which commit a branch points at. argv lists, deadlines, no prompts."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import anyio

from core import tarball
from core.exceptions import CoreError
from protocol.gitauth import credential_env
from protocol.messages import GitCredentials

GIT_TIMEOUT = 30.0
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


class GitError(CoreError):
    """A git command failed or gave no usable answer."""


def _env(url: str = "", credentials: GitCredentials | None = None) -> dict[str, str]:
    """No prompts; with ``credentials``, git's credential helper for ``url``
    (``protocol.gitauth``): the token is in no argv, URL or message."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SSH_AUTH_SOCK")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", LC_ALL="C")
    if credentials is not None:
        env.update(credential_env(url, credentials.username, credentials.token))
    return env


def redact(url: str) -> str:
    """A URL without its credentials, for messages."""
    return re.sub(r"//[^/@]*@", "//***@", url)


async def resolve_branch(
    url: str,
    branch: str,
    time_limit: float = GIT_TIMEOUT,
    credentials: GitCredentials | None = None,
) -> str:
    """The commit ``branch`` of ``url`` points at (``git ls-remote``)."""
    if url.startswith("-") or branch.startswith("-"):
        raise GitError(f"refusing a repository or branch starting with '-': {redact(url)}")
    ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
    try:
        with anyio.fail_after(time_limit):
            done = await anyio.run_process(
                ["git", "ls-remote", "--", url, ref], env=_env(url, credentials), check=False
            )
    except TimeoutError as exc:
        raise GitError(f"git ls-remote {redact(url)} took longer than {time_limit:g}s") from exc
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from exc
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(
            f"cannot read {redact(url)}: {reason[-1] if reason else f'exit {done.returncode}'}"
        )
    for line in done.stdout.decode().splitlines():
        sha, _, name = line.partition("\t")
        if name == ref and _SHA.fullmatch(sha):
            return sha
    raise GitError(f"{redact(url)} has no branch {branch!r}")


# ------------------------------------------------------------------- mirrors (blocking)
# The sync service runs in worker threads; these block, each git call with a deadline.


def _run(
    argv: list[str],
    what: str,
    time_limit: float = GIT_TIMEOUT,
    env: dict[str, str] | None = None,
    **kwargs: object,
) -> str:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=time_limit,
            env=env if env is not None else _env(),
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"{what}: git took longer than {time_limit:g}s") from exc
    except OSError as exc:
        raise GitError(f"{what}: cannot run git: {exc}") from exc
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"{what}: {reason[-1] if reason else f'git exited {done.returncode}'}")
    return str(done.stdout.decode(errors="replace"))


def update_mirror(
    url: str, mirror: os.PathLike[str] | str, credentials: GitCredentials | None = None
) -> None:
    """A bare mirror of ``url`` at ``mirror``: cloned the first time, fetched after."""
    path = Path(mirror)
    env = _env(url, credentials)
    if url.startswith("-"):
        raise GitError(f"refusing a repository starting with '-': {redact(url)}")
    if (path / "HEAD").exists():
        _run(
            [
                "git",
                "--git-dir",
                str(path),
                "fetch",
                "--prune",
                "--quiet",
                "--",
                url,
                "+refs/heads/*:refs/heads/*",
            ],
            f"fetching {redact(url)}",
            env=env,
        )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _run(
        ["git", "clone", "--mirror", "--quiet", "--", url, str(tmp)],
        f"cloning {redact(url)}",
        env=env,
    )
    os.replace(tmp, path)


def _read_ref(mirror: Path, ref: str) -> str:
    """The commit a ref names, read from the mirror's files (a loose ref, then packed-refs);
    "" when it is neither (a symbolic ref, say): ask git then."""
    if ".." in ref.split("/"):
        return ""
    try:
        loose = (mirror / ref).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        loose = ""
    if _SHA.fullmatch(loose):
        return loose
    if loose:
        return ""
    try:
        packed = (mirror / "packed-refs").read_text(encoding="utf-8")
    except OSError:
        return ""
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _SHA.fullmatch(sha):
            return sha
    return ""


def branch_commit(mirror: os.PathLike[str] | str, branch: str) -> str:
    ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
    fast = _read_ref(Path(mirror), ref)  # no process: this is on every webhook's path
    if fast:
        return fast
    out = _run(
        ["git", "--git-dir", str(mirror), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        f"branch {branch!r}",
    ).strip()
    if not _SHA.fullmatch(out):
        raise GitError(f"no branch {branch!r} in the repository")
    return out


def export_tree(mirror: os.PathLike[str] | str, commit: str, dest: os.PathLike[str] | str) -> None:
    """The files of ``commit`` under ``dest`` (made once; an existing one is kept).

    One ``git archive`` read as a tar stream; members are checked and written by
    ``core.tarball``, so nothing lands outside ``dest`` (no absolute paths, no links out, no
    devices), on every supported Python."""
    target = Path(dest)
    if target.is_dir():
        return
    if not _SHA.fullmatch(commit):
        raise GitError(f"exporting {commit[:12]!r}: not a commit id")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        with subprocess.Popen(
            ["git", "--git-dir", str(mirror), "archive", "--format=tar", commit],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        ) as proc:
            assert proc.stdout is not None
            try:
                tarball.extract(proc.stdout, tmp)
            except (tarfile.TarError, OSError, tarball.UnsafeArchive) as exc:
                proc.kill()
                raise GitError(f"exporting {commit[:12]}: {exc}") from exc
            finally:
                try:
                    err = proc.communicate(timeout=GIT_TIMEOUT)[1]
                except subprocess.TimeoutExpired as exc:
                    proc.kill()
                    raise GitError(f"exporting {commit[:12]}: git took too long") from exc
            if proc.returncode != 0:
                raise GitError(f"exporting {commit[:12]}: {err.decode(errors='replace').strip()}")
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_and_compare(
    mirror: os.PathLike[str] | str, commit: str, dest: os.PathLike[str] | str, old: str
) -> list[str]:
    """``export_tree`` and ``changed_paths(old, commit)`` with their git processes running at
    the same time (both are on every push's way to a deploy). ``GitError`` from the comparison
    (``old`` gone after a force push) gives no changed paths."""
    diff: subprocess.Popen[bytes] | None = None
    if old and old != commit:
        diff = subprocess.Popen(
            ["git", "--git-dir", str(mirror), "diff", "--name-only", "--no-renames", old, commit],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
    try:
        export_tree(mirror, commit, dest)
    finally:
        out = b""
        if diff is not None:
            try:
                out, _ = diff.communicate(timeout=GIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                diff.kill()
                diff.communicate()
                out = b""
    if diff is None or diff.returncode != 0:
        return []
    return [line for line in out.decode(errors="replace").splitlines() if line]


def changed_paths(mirror: os.PathLike[str] | str, old: str, new: str) -> list[str]:
    """Paths that differ between two commits (renames count on both sides)."""
    if not old or old == new:
        return []
    out = _run(
        ["git", "--git-dir", str(mirror), "diff", "--name-only", "--no-renames", old, new],
        f"comparing {old[:12]}..{new[:12]}",
    )
    return [line for line in out.splitlines() if line]


def mirror_path(base: os.PathLike[str] | str, url: str) -> Path:
    """Where the core keeps its mirror of ``url`` under ``base`` (readable tail, hash)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", url)[-40:]
    digest = hashlib.sha1(url.encode()).hexdigest()[:10]
    return Path(base) / f"{slug}-{digest}.git"


def show_file(mirror: os.PathLike[str] | str, commit: str, path: str) -> bytes:
    """The contents of ``path`` at ``commit`` in the mirror (``git show``)."""
    if not _SHA.fullmatch(commit):
        raise GitError(f"reading {path}: {commit[:12]!r} is not a commit id")
    try:
        out = subprocess.run(
            ["git", "--git-dir", str(mirror), "show", f"{commit}:{path}"],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            env=_env(),
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise GitError(f"reading {path} at {commit[:12]}: {exc}") from exc
    if out.returncode != 0:
        raise GitError(f"{path} at {commit[:12]}: {out.stderr.decode(errors='replace').strip()}")
    return out.stdout


def is_ancestor(mirror: os.PathLike[str] | str, old: str, new: str) -> bool:
    """Whether ``new`` descends from ``old`` (or is it); False when either is unknown there."""
    if not (_SHA.fullmatch(old) and _SHA.fullmatch(new)):
        return False
    try:
        done = subprocess.run(
            ["git", "--git-dir", str(mirror), "merge-base", "--is-ancestor", old, new],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            env=_env(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def provider_url(provider: str, https: bool, repo: str) -> str:
    """Komodo's ``git_provider`` + ``repo`` (``account/name``) as its clone URL
    (``RepoExecutionArgs::remote_url``): ``https://PROVIDER/REPO``, ``http://`` when not
    ``git_https``."""
    return f"{'https' if https else 'http'}://{provider}/{repo}"
