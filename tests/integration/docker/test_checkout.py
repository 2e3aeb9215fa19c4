"""periphery.ops.checkout and the stack's own commands against real git repositories (no Docker
needed).

Komodo deploys a stack from one clone at a fixed path (periphery ``stack/write.rs``,
``write_stack_inline_repo``: ``stack_dir/<name>``, moved by ``git pull`` / ``reset --hard``);
the checkout here keeps that path and what git does not track. Its commands run where Komodo
runs them (``api/compose.rs``, ``ComposeUp``: ``run_directory.join(pre_deploy.path)``) in its
modes (``lib/command``, ``KomodoCommandMode``; ``parsers.rs``, ``parse_multiline_command``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio
import pytest

from periphery.exceptions import (
    CheckoutError,
    DeployError,
    ForbiddenPath,
    InvalidName,
    PreDeployFailed,
)
from periphery.ops.checkout import checkout
from periphery.ops.commands import command_argv, run_command
from periphery.paths import STATE, stack_paths
from protocol.messages import StackSource

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

    def commit(
        self,
        files: dict[str, str],
        links: dict[str, str] | None = None,
        remove: tuple[str, ...] = (),
    ) -> str:
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        for name, target in (links or {}).items():
            (self.work / name).symlink_to(target)
        for name in remove:
            (self.work / name).unlink()
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


async def test_a_new_commit_moves_the_same_directory(repo: Repo, root: Path, recorder) -> None:
    first = repo.commit(
        {"stacks/web/compose.yaml": "v1\n", "stacks/db/compose.yaml": "db\n", "old": "x\n"}
    )
    second = repo.commit({"stacks/web/compose.yaml": "v2\n"}, remove=("old",))

    one, full = await checkout(root, repo.url, first, "homelab", recorder)
    assert (one, full) == (root / "homelab", first)
    assert (one / "stacks/web/compose.yaml").read_text() == "v1\n"
    assert not (one / ".git").exists()
    # what the deploy and the stack write there is not git's: it stays
    (one / "stacks/web/.env").write_text("A=1\n")
    (one / "stacks/db/data").mkdir()
    (one / "stacks/db/data/pg").write_text("rows\n")
    untouched = (one / "stacks/db/compose.yaml").stat()

    two, full = await checkout(root, repo.url, second[:12], "homelab", recorder)
    assert (two, full) == (root / "homelab", second)
    assert (two / "stacks/web/compose.yaml").read_text() == "v2\n"
    assert not (two / "old").exists()
    assert (two / "stacks/web/.env").read_text() == "A=1\n"
    assert (two / "stacks/db/data/pg").read_text() == "rows\n"
    again = (two / "stacks/db/compose.yaml").stat()
    assert (again.st_ino, again.st_mtime_ns) == (untouched.st_ino, untouched.st_mtime_ns)
    assert (root / STATE / "checkouts" / "homelab.commit").read_text() == f"{second}\n"
    assert len(list((root / ".mirrors").glob("*-*[0-9a-f]"))) == 1
    assert f"homelab: checked out {second[:12]}" in recorder.text()

    # back to the first commit, and a tracked file changed by hand is put back
    (two / "stacks/web/compose.yaml").write_text("edited\n")
    await checkout(root, repo.url, first, "homelab", recorder)
    assert (two / "stacks/web/compose.yaml").read_text() == "v1\n"
    assert (two / "old").read_text() == "x\n"


async def test_the_old_per_commit_layout_is_left_behind(repo: Repo, root: Path, recorder) -> None:
    sha = repo.commit({"compose.yaml": "ok\n"})
    old = root / "st" / "commits" / ("a" * 40)
    old.mkdir(parents=True)
    (root / "st" / "current").symlink_to(f"commits/{'a' * 40}")
    await checkout(root, repo.url, sha, "st", recorder)
    assert sorted(p.name for p in (root / "st").iterdir()) == ["compose.yaml"]


async def test_concurrent_targets_share_one_mirror(repo: Repo, root: Path, recorder) -> None:
    sha = repo.commit({"a": "1\n"})
    async with anyio.create_task_group() as tg:
        for target in ("one", "two", "three"):
            tg.start_soon(checkout, root, repo.url, sha, target, recorder)
    for target in ("one", "two", "three"):
        assert (root / target / "a").read_text() == "1\n"


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


async def test_symlink_outside_is_refused_and_the_previous_commit_put_back(
    repo: Repo, root: Path, recorder
) -> None:
    good = repo.commit({"compose.yaml": "ok\n"})
    await checkout(root, repo.url, good, "st", recorder)
    (root / "st" / "data").mkdir()
    (root / "st" / "data" / "host").symlink_to("/etc")  # a container's own: not git's
    evil = repo.commit({"compose.yaml": "evil\n"}, links={"secrets": "/etc", "up": "../../.."})
    with pytest.raises(ForbiddenPath, match="points outside"):
        await checkout(root, repo.url, evil, "st", recorder)
    assert (root / "st" / "compose.yaml").read_text() == "ok\n"
    assert not (root / "st" / "secrets").is_symlink() and not (root / "st" / "up").is_symlink()
    assert (root / STATE / "checkouts" / "st.commit").read_text() == f"{good}\n"
    # a first checkout that is refused leaves no tracked file
    with pytest.raises(ForbiddenPath):
        await checkout(root, repo.url, evil, "fresh", recorder)
    assert list((root / "fresh").iterdir()) == []


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
    assert not (root / "t").exists()


async def test_paths_leaving_the_checkout_are_refused_before_anything_runs(
    repo: Repo, root: Path, recorder
) -> None:
    sha = repo.commit({"stacks/web/compose.yaml": "services: {}\n", "global.env": "A=1\n"})
    await checkout(root, repo.url, sha, "st", recorder)
    with pytest.raises(ForbiddenPath):
        stack_paths(root, "st", StackSource.GIT, "../../etc")
    paths = stack_paths(root, "st", StackSource.GIT, "stacks/web")
    assert paths.run_directory == root / "st" / "stacks" / "web"
    # Komodo's `run_directory.join(path)`: a sibling inside the checkout is fine
    assert paths.resolve("../../global.env").resolve() == root / "st" / "global.env"
    with pytest.raises(ForbiddenPath, match="leads outside the checkout"):
        paths.resolve("../../../../etc/passwd")
    with pytest.raises(ForbiddenPath):
        paths.command_directory("../../..", "pre_deploy")
    # an absolute path is the resource author's, used as given
    assert paths.command_directory("/", "pre_deploy") == Path("/")
    assert paths.command_directory("", "pre_deploy") == paths.run_directory
    with pytest.raises(DeployError, match="not a directory"):
        paths.command_directory("nope", "pre_deploy")


async def test_multiline_commands_run_in_order_and_stop_at_the_first_failure(
    tmp_path: Path, recorder
) -> None:
    """``parse_multiline_command``: each line in order, ``&&`` between them, comments out."""
    text = "# prepare\necho one > log   # first\n\necho two >> log\nfalse\necho three >> log\n"
    argv = command_argv(text, shell_mode=False)
    assert argv is not None
    assert argv[1:] == ["-c", "echo one > log && echo two >> log && false && echo three >> log"]
    with pytest.raises(PreDeployFailed, match="pre_deploy exited with code 1"):
        await run_command(argv, tmp_path, "pre_deploy", recorder)
    assert (tmp_path / "log").read_text() == "one\ntwo\n"
    assert command_argv("# nothing\n\n   # here\n", shell_mode=False) is None


async def test_shell_mode_runs_the_text_as_it_is(tmp_path: Path, recorder) -> None:
    text = "for x in a b; do\n  echo $x >> log\ndone\n"
    multiline = command_argv(text, shell_mode=False)
    assert multiline is not None
    with pytest.raises(PreDeployFailed):  # joined with && it is not a shell loop any more
        await run_command(multiline, tmp_path, "pre_deploy", recorder)
    shell = command_argv(text, shell_mode=True)
    assert shell is not None and shell[2] == text
    await run_command(shell, tmp_path, "post_deploy", recorder)
    assert (tmp_path / "log").read_text() == "a\nb\n"


async def test_commands_run_in_their_directory_and_time_out(tmp_path: Path, recorder) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "check.sh").write_text("echo checking in $(pwd)\n")
    argv = command_argv("sh check.sh", shell_mode=False)
    assert argv is not None
    await run_command(argv, tmp_path / "scripts", "pre_deploy", recorder)
    assert f"checking in {tmp_path / 'scripts'}" in recorder.text()
    failing = command_argv("echo 'missing directory /srv/data' >&2; exit 3", shell_mode=True)
    assert failing is not None
    with pytest.raises(PreDeployFailed, match="exited with code 3") as info:
        await run_command(failing, tmp_path, "pre_deploy", recorder)
    assert "missing directory /srv/data" in str(info.value)
    slow = command_argv("sleep 30", shell_mode=False)
    assert slow is not None
    with pytest.raises(PreDeployFailed, match="timed out"):
        await run_command(slow, tmp_path, "pre_deploy", recorder, time_limit=0.5)
    assert os.listdir(tmp_path) == ["scripts"]
