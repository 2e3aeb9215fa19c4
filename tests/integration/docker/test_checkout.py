"""periphery.ops.checkout and pre-deploy against real git repositories (no Docker needed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from periphery.exceptions import CheckoutError, ForbiddenPath, InvalidName, PreDeployFailed
from periphery.ops.checkout import checkout
from periphery.ops.paths import run_paths
from periphery.ops.predeploy import run_pre_deploy

pytestmark = pytest.mark.anyio


class Repo:
    """A work tree and the bare repository it pushes to (served as file://)."""

    def __init__(self, tmp: Path) -> None:
        self.work = tmp / "work"
        self.bare = tmp / "origin.git"
        self.url = f"file://{self.bare}"
        self.git("init", "-q", "--bare", str(self.bare), cwd=tmp)
        self.git("init", "-q", "-b", "main", str(self.work), cwd=tmp)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
            cwd=cwd or self.work,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout.strip()

    def commit(self, files: dict[str, str], links: dict[str, str] | None = None) -> str:
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        for name, target in (links or {}).items():
            (self.work / name).symlink_to(target)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "change")
        self.git("push", "-q", self.url, "main")
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


async def test_two_commits_switch_current(repo: Repo, root: Path, recorder) -> None:
    first = repo.commit({"stacks/web/compose.yaml": "v1\n", "README": "x\n"})
    second = repo.commit({"stacks/web/compose.yaml": "v2\n"})

    one = await checkout(root, repo.url, first, "homelab", recorder)
    assert one == root / "homelab" / "commits" / first
    assert (one / "stacks/web/compose.yaml").read_text() == "v1\n"
    assert not (one / ".git").exists()
    current = root / "homelab" / "current"
    assert os.readlink(current) == f"commits/{first}"

    # readers of `current` never see it missing or half-written while it switches
    seen: set[str] = set()
    done = anyio.Event()

    async def reader() -> None:
        while not done.is_set():
            seen.add((current / "stacks/web/compose.yaml").read_text())
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        two = await checkout(root, repo.url, second[:12], "homelab", recorder)
        done.set()
    assert seen <= {"v1\n", "v2\n"}
    assert os.readlink(current) == f"commits/{second}"
    assert (current / "stacks/web/compose.yaml").read_text() == "v2\n"
    assert one.is_dir() and two.is_dir()
    assert sorted(p.name for p in (root / "homelab").iterdir()) == [".lock", "commits", "current"]
    assert len(list((root / ".mirrors").glob("*-*[0-9a-f]"))) == 1
    assert b"current -> " in b"".join(line for _, line in recorder.lines)

    # back to the first commit: reused, not exported again
    await checkout(root, repo.url, first, "homelab", recorder)
    assert os.readlink(current) == f"commits/{first}"
    assert "already checked out" in recorder.text()


async def test_concurrent_targets_share_one_mirror(repo: Repo, root: Path, recorder) -> None:
    sha = repo.commit({"a": "1\n"})
    async with anyio.create_task_group() as tg:
        for target in ("one", "two", "three"):
            tg.start_soon(checkout, root, repo.url, sha, target, recorder)
    for target in ("one", "two", "three"):
        assert (root / target / "current" / "a").read_text() == "1\n"


async def test_syncs_of_one_repo_clone_arriving_together_take_turns(
    repo: Repo, root: Path, recorder
) -> None:
    """A deploy's RepoSync and a pull of the same [[repo]] clone, at once, on a fresh path."""
    from periphery.ops.repo import sync_repo

    sha = repo.commit({"scripts/check.sh": "echo ok\n"})
    clone = root.parent / "host" / "clone"
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(sync_repo, root, repo.url, sha, str(clone), recorder)
    assert (clone / "scripts" / "check.sh").read_text() == "echo ok\n"


async def test_symlink_outside_is_refused_before_switching(
    repo: Repo, root: Path, recorder
) -> None:
    good = repo.commit({"compose.yaml": "ok\n"})
    await checkout(root, repo.url, good, "st", recorder)
    evil = repo.commit({}, links={"secrets": "/etc", "up": "../../.."})
    with pytest.raises(ForbiddenPath, match="points outside"):
        await checkout(root, repo.url, evil, "st", recorder)
    assert os.readlink(root / "st" / "current") == f"commits/{good}"
    assert sorted(p.name for p in (root / "st" / "commits").iterdir()) == [good]


async def test_bad_requests(repo: Repo, root: Path, recorder) -> None:
    sha = repo.commit({"a": "1\n"})
    for target in ("../x", ".mirrors", "a/b", ""):
        with pytest.raises(InvalidName):
            await checkout(root, repo.url, sha, target, recorder)
    with pytest.raises(InvalidName):
        await checkout(root, repo.url, "main", "t", recorder)
    with pytest.raises(CheckoutError, match="not in"):
        await checkout(root, repo.url, "0" * 40, "t", recorder)
    with pytest.raises(CheckoutError):
        await checkout(root, f"file://{root}/nothing.git", sha, "t", recorder)
    assert [p.name for p in (root / ".mirrors").iterdir() if p.name.endswith(".tmp")] == []
    assert not (root / "t" / "current").exists()


async def test_run_directory_outside_is_refused_before_anything_runs(
    repo: Repo, root: Path, recorder
) -> None:
    sha = repo.commit({"stacks/web/compose.yaml": "services: {}\n"})
    tree = await checkout(root, repo.url, sha, "st", recorder)
    with pytest.raises(ForbiddenPath):
        run_paths(tree, "../../etc", [])
    with pytest.raises(ForbiddenPath):
        run_paths(tree, "stacks/web", ["../../../../etc/passwd"])
    marker = root / "ran"
    with pytest.raises(ForbiddenPath):
        await run_pre_deploy(tree, f"touch {marker}", "../../etc", {}, recorder)
    assert not marker.exists()


async def test_pre_deploy_runs_with_env_in_path(repo: Repo, root: Path, recorder) -> None:
    sha = repo.commit({"scripts/check.sh": "echo checking $STACK_VAR in $(pwd)\n"})
    tree = await checkout(root, repo.url, sha, "st", recorder)
    await run_pre_deploy(tree, "sh check.sh && test -d .", "scripts", {"STACK_VAR": "v1"}, recorder)
    assert f"checking v1 in {tree / 'scripts'}" in recorder.text()
    await run_pre_deploy(tree, "test -d /etc", "/", {}, recorder)  # absolute from the resource


async def test_pre_deploy_failure_and_timeout(repo: Repo, root: Path, recorder) -> None:
    sha = repo.commit({"x": "1\n"})
    tree = await checkout(root, repo.url, sha, "st", recorder)
    with pytest.raises(PreDeployFailed, match="exited with code 3") as info:
        await run_pre_deploy(
            tree, "echo 'missing directory /srv/data' >&2; exit 3", None, {}, recorder
        )
    assert "missing directory /srv/data" in str(info.value)
    with pytest.raises(PreDeployFailed, match="timed out"):
        await run_pre_deploy(tree, "sleep 30", None, {}, recorder, time_limit=0.5)
    with pytest.raises(PreDeployFailed, match="not a directory"):
        await run_pre_deploy(tree, "true", "nope", {}, recorder)
