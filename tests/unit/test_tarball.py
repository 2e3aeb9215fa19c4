"""core.tarball: the tar extraction every git export goes through, the same on every supported
Python (Debian 12's 3.11.2 has no ``extractall(filter=...)``). Pure: tars built in memory, a
temporary directory, no git (one test runs a real ``git archive`` of a repository with links)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from core import git, tarball


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    buf.seek(0)
    return buf


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def _entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755
    return info, None


def _outside(tmp_path: Path) -> set[str]:
    return {p.name for p in tmp_path.iterdir()} - {"dest"}


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "dest"
    d.mkdir()
    return d


@pytest.mark.parametrize(
    ("member", "says"),
    [
        (_file("../x"), "'..'"),
        (_file("a/../../x"), "'..'"),
        (_file("/etc/passwd-x"), "absolute"),
        (_entry("out", tarfile.SYMTYPE, "../x"), "leads outside"),
        (_entry("deep/out", tarfile.SYMTYPE, "../../x"), "leads outside"),
        (_entry("abs", tarfile.SYMTYPE, "/etc"), "absolute"),
        (_entry("hard", tarfile.LNKTYPE, "other"), "hard link"),
        (_entry("dev", tarfile.CHRTYPE), "device"),
        (_entry("blk", tarfile.BLKTYPE), "device"),
        (_entry("fifo", tarfile.FIFOTYPE), "FIFO"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-deep-out",
         "symlink-absolute", "hardlink", "char-device", "block-device", "fifo"],
)
def test_unsafe_members_are_refused(
    dest: Path, tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], says: str
) -> None:
    with pytest.raises(tarball.UnsafeArchive, match=says):
        tarball.extract(_tar(_file("ok.txt"), member), dest)
    assert _outside(tmp_path) == set()  # nothing landed beside dest


def test_a_link_inside_cannot_be_used_to_write_outside(dest: Path, tmp_path: Path) -> None:
    # "d" -> "." is inside; "d/../x" would be caught by name, so go through a link chain:
    # "up" -> "sub/.." is inside too, but "sub" then becomes a link leading out.
    archive = _tar(
        _entry("sub", tarfile.DIRTYPE),
        _entry("up", tarfile.SYMTYPE, "sub/.."),
        _entry("sub2", tarfile.SYMTYPE, ".."),
    )
    with pytest.raises(tarball.UnsafeArchive, match="sub2"):
        tarball.extract(archive, dest)
    assert _outside(tmp_path) == set()


def test_writing_through_an_extracted_link_is_checked(dest: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    # A link made before extraction (not by the archive) that leads outside: the member
    # below it is refused rather than written there.
    (dest / "link").symlink_to(outside)
    with pytest.raises(tarball.UnsafeArchive, match="leads outside"):
        tarball.extract(_tar(_file("link/x")), dest)
    assert list(outside.iterdir()) == []


def test_a_member_appearing_twice_is_refused(dest: Path) -> None:
    with pytest.raises(tarball.UnsafeArchive, match="twice"):
        tarball.extract(_tar(_file("a"), _entry("a", tarfile.SYMTYPE, "b")), dest)


def test_a_good_tree_is_written_with_safe_modes(dest: Path) -> None:
    n = tarball.extract(
        _tar(
            _entry("stacks", tarfile.DIRTYPE),
            _file("stacks/compose.yaml", b"services: {}\n"),
            _file("run.sh", b"#!/bin/sh\n", mode=0o4777),
            _entry("stacks/link.yaml", tarfile.SYMTYPE, "compose.yaml"),
            _entry("top", tarfile.SYMTYPE, "stacks"),
            _file("implicit/dir/file", b"deep"),
        ),
        dest,
    )
    assert n == 6
    assert (dest / "stacks/link.yaml").read_bytes() == b"services: {}\n"
    assert os.readlink(dest / "top") == "stacks"
    assert (dest / "implicit/dir/file").read_bytes() == b"deep"
    mode = stat.S_IMODE((dest / "run.sh").stat().st_mode)
    assert mode == 0o755  # no set-uid, no world write
    assert stat.S_IMODE((dest / "stacks/compose.yaml").stat().st_mode) == 0o644


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def test_git_export_keeps_inner_links_and_refuses_links_out(tmp_path: Path) -> None:
    """The real path: ``git archive`` of a repository whose tree holds a symlink."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "compose.yaml").write_text("services: {}\n")
    (repo / "alias.yaml").symlink_to("compose.yaml")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "good")
    good = _git(repo, "rev-parse", "HEAD")
    (repo / "escape").symlink_to("../../../etc")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "bad")
    bad = _git(repo, "rev-parse", "HEAD")

    git.export_tree(repo / ".git", good, tmp_path / "good")
    assert (tmp_path / "good/alias.yaml").read_text() == "services: {}\n"

    with pytest.raises(git.GitError, match="escape.*leads outside"):
        git.export_tree(repo / ".git", bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "repo"]  # no temp left
