"""periphery.paths: the one module that confines paths and says where a stack's files are.

Komodo joins every path of a stack to its base with Rust's ``Path::join`` (periphery
``stack/write.rs``, ``write_stack``; ``api/compose.rs``, ``ComposeUp``): an absolute path
replaces the base. The rules here are checked against that.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from periphery.exceptions import DeployError, ForbiddenPath, InvalidName
from periphery.paths import (
    commit_id,
    confine,
    komodo_join,
    refuse_escaping_symlinks,
    resolve_inside,
    safe_name,
    stack_paths,
)
from protocol.messages import StackSource


def test_paths_inside_the_root_resolve(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert confine(tmp_path, "a/b") == (tmp_path / "a" / "b").resolve()
    assert confine(tmp_path, "") == tmp_path.resolve()
    assert confine(tmp_path, str(tmp_path / "a")) == (tmp_path / "a").resolve()


@pytest.mark.parametrize("path", ["..", "../etc", "a/../../etc", "/etc", "a/\x00b"])
def test_paths_leaving_the_root_are_refused(tmp_path: Path, path: str) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(ForbiddenPath):
        confine(tmp_path, path)


def test_a_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/etc", root / "escape")
    with pytest.raises(ForbiddenPath, match="outside"):
        confine(root, "escape")
    with pytest.raises(ForbiddenPath):
        confine(root, "escape/passwd")


def test_a_sibling_with_a_common_prefix_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root2").mkdir()
    with pytest.raises(ForbiddenPath):
        confine(tmp_path / "root", "../root2")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    base = tmp_path / "checkout"
    (base / "stacks" / "web").mkdir(parents=True)
    (base / "stacks" / "web" / "compose.yaml").write_text("services: {}\n")
    (tmp_path / "outside").mkdir()
    return base


@pytest.mark.parametrize("rel", ["stacks/web", "stacks/web/compose.yaml", ".", "", "new/file"])
def test_resolve_inside_accepts_paths_in_base(tree: Path, rel: str) -> None:
    path = resolve_inside(tree, rel)
    assert path.is_relative_to(tree.resolve())


@pytest.mark.parametrize("rel", ["../../etc", "..", "stacks/../../x", "/etc", "/", "a\x00b"])
def test_resolve_inside_refuses_escapes(tree: Path, rel: str) -> None:
    with pytest.raises(ForbiddenPath):
        resolve_inside(tree, rel)


def test_resolve_inside_refuses_symlink_escape(tree: Path) -> None:
    (tree / "stacks" / "evil").symlink_to(tree.parent / "outside")
    with pytest.raises(ForbiddenPath, match="outside"):
        resolve_inside(tree, "stacks/evil/compose.yaml")
    (tree / "abs").symlink_to("/etc")
    with pytest.raises(ForbiddenPath):
        resolve_inside(tree, "abs")


def test_resolve_inside_follows_symlinks_that_stay_inside(tree: Path) -> None:
    (tree / "alias").symlink_to("stacks/web")
    assert (
        resolve_inside(tree, "alias/compose.yaml") == (tree / "stacks/web/compose.yaml").resolve()
    )


def test_refuse_escaping_symlinks(tree: Path) -> None:
    (tree / "ok").symlink_to("stacks/web/compose.yaml")
    (tree / "dangling").symlink_to("stacks/nothing")
    refuse_escaping_symlinks(tree)
    (tree / "stacks" / "web" / "secrets").symlink_to("../../../outside")
    with pytest.raises(ForbiddenPath, match="stacks/web/secrets"):
        refuse_escaping_symlinks(tree)


def test_refuse_escaping_symlink_chain(tree: Path) -> None:
    (tree / "b").symlink_to("/etc/passwd")
    (tree / "a").symlink_to("b")
    with pytest.raises(ForbiddenPath):
        refuse_escaping_symlinks(tree)


@pytest.mark.parametrize("name", ["web", "media-core", "a.b_c", "X1"])
def test_safe_name_accepts(name: str) -> None:
    assert safe_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "-x", "a/b", "a b", "x" * 129])
def test_safe_name_refuses(name: str) -> None:
    with pytest.raises(InvalidName):
        safe_name(name)


def test_commit_id() -> None:
    assert commit_id("ABCDEF1") == "abcdef1"
    for bad in ("", "abc", "--upload-pack=x", "main", "g" * 40, "a" * 65):
        with pytest.raises(InvalidName):
            commit_id(bad)


def test_komodo_join() -> None:
    """``base.join(path).components()``: absolute replaces, ``.`` goes, ``..`` stays."""
    base = Path("/srv/stacks/app")
    assert komodo_join(base, "") == base
    assert komodo_join(base, ".") == base
    assert komodo_join(base, "./compose.yaml") == base / "compose.yaml"
    assert komodo_join(base, "../global.env") == Path("/srv/stacks/app/../global.env")
    assert komodo_join(base, "/etc/komodo/op.env") == Path("/etc/komodo/op.env")
    with pytest.raises(ForbiddenPath):
        komodo_join(base, "a\x00b")


def test_where_each_kind_of_stack_runs(tmp_path: Path) -> None:
    """``write_stack``: a repo stack in its checkout joined with run_directory; files on the
    host in ``stack_dir/<name>`` joined with it (an absolute one as given); file_contents in
    ``stack_dir/<name>`` whatever run_directory says."""
    root = tmp_path.resolve()
    (root / "web" / "stacks" / "web").mkdir(parents=True)
    git = stack_paths(root, "web", StackSource.GIT, "stacks/web")
    assert git.run_directory == root / "web" / "stacks" / "web"
    assert git.confined_to == root / "web"
    host = stack_paths(root, "dns", StackSource.FILES_ON_HOST, "/opt/homelab/dns")
    assert host.run_directory == Path("/opt/homelab/dns") and host.confined_to is None
    assert host.resolve("../global.env") == Path("/opt/homelab/dns/../global.env")
    relative = stack_paths(root, "dns", StackSource.FILES_ON_HOST, "here")
    assert relative.run_directory == root / "dns" / "here"
    contents = stack_paths(root, "ui", StackSource.FILE_CONTENTS, "ignored/by/komodo")
    assert contents.run_directory == root / "ui"
    with pytest.raises(InvalidName):
        stack_paths(root, "../x", StackSource.GIT, "")
    with pytest.raises(ForbiddenPath):
        stack_paths(root, "web", StackSource.GIT, "../../etc")
    os.symlink("/etc", root / "web" / "etc")
    with pytest.raises(ForbiddenPath):
        stack_paths(root, "web", StackSource.GIT, "etc")
    with pytest.raises(ForbiddenPath):
        git.resolve("../../etc/passwd")
    assert git.resolve("/etc/passwd") == Path("/etc/passwd")
    with pytest.raises(DeployError, match="not a directory"):
        git.command_directory("missing", "post_deploy")


def test_redact_and_mirror_name() -> None:
    from periphery.ops.checkout import mirror_name, redact

    assert redact("https://bob:tok3n@git.example/x/y.git") == "https://***@git.example/x/y.git"
    assert redact("ssh://git@host:22/x.git") == "ssh://***@host:22/x.git"
    assert redact("file:///srv/git/x.git") == "file:///srv/git/x.git"
    name = mirror_name("https://bob:tok3n@git.example/x/y.git")
    assert "tok3n" not in name and "bob" not in name
    assert name != mirror_name("https://git.example/x/y.git")
    assert mirror_name("file:///srv/git/x.git").startswith("file_srv_git_x.git-")
