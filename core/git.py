"""The core's own git: which commit a branch points at. argv lists, deadlines, no prompts."""

from __future__ import annotations

import os
import re

import anyio

from core.exceptions import CoreError

GIT_TIMEOUT = 30.0
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


class GitError(CoreError):
    """A git command failed or gave no usable answer."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SSH_AUTH_SOCK")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", LC_ALL="C")
    return env


def redact(url: str) -> str:
    """A URL without its credentials, for messages."""
    return re.sub(r"//[^/@]*@", "//***@", url)


async def resolve_branch(url: str, branch: str, time_limit: float = GIT_TIMEOUT) -> str:
    """The commit ``branch`` of ``url`` points at (``git ls-remote``)."""
    if url.startswith("-") or branch.startswith("-"):
        raise GitError(f"refusing a repository or branch starting with '-': {redact(url)}")
    ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
    try:
        with anyio.fail_after(time_limit):
            done = await anyio.run_process(
                ["git", "ls-remote", "--", url, ref], env=_env(), check=False
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
