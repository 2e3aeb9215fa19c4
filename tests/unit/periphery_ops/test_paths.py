from __future__ import annotations

import os
from pathlib import Path

import pytest

from periphery.exceptions import DeployError, ForbiddenPath, InvalidName
from periphery.ops.paths import (
    commit_id,
    refuse_escaping_symlinks,
    resolve_inside,
    run_paths,
    safe_name,
)


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


def test_run_paths_default_file(tree: Path) -> None:
    paths = run_paths(tree, "stacks/web", [])
    assert paths.run_directory == (tree / "stacks/web").resolve()
    assert paths.relative_files() == ("compose.yaml",)


def test_run_paths_named_files(tree: Path) -> None:
    (tree / "stacks/web/extra.yml").write_text("services: {}\n")
    paths = run_paths(tree, "stacks/web", ["compose.yaml", "extra.yml"])
    assert paths.relative_files() == ("compose.yaml", "extra.yml")


def test_run_paths_refusals(tree: Path) -> None:
    with pytest.raises(ForbiddenPath):
        run_paths(tree, "../../etc", ["passwd"])
    with pytest.raises(ForbiddenPath):
        run_paths(tree, "stacks/web", ["../../../etc/passwd"])
    with pytest.raises(ForbiddenPath):
        run_paths(tree, "stacks/web", ["/etc/passwd"])
    with pytest.raises(DeployError, match="not a directory"):
        run_paths(tree, "stacks/none", [])
    with pytest.raises(DeployError, match="does not exist"):
        run_paths(tree, "stacks/web", ["missing.yml"])
    with pytest.raises(DeployError, match="no compose file"):
        run_paths(tree, "stacks", [])
    os.symlink("/etc", tree / "etc")
    with pytest.raises(ForbiddenPath):
        run_paths(tree, "etc", ["passwd"])


def test_redact_and_mirror_name() -> None:
    from periphery.ops.checkout import mirror_name, redact

    assert redact("https://bob:tok3n@git.example/x/y.git") == "https://***@git.example/x/y.git"
    assert redact("ssh://git@host:22/x.git") == "ssh://***@host:22/x.git"
    assert redact("file:///srv/git/x.git") == "file:///srv/git/x.git"
    name = mirror_name("https://bob:tok3n@git.example/x/y.git")
    assert "tok3n" not in name and "bob" not in name
    assert name != mirror_name("https://git.example/x/y.git")
    assert mirror_name("file:///srv/git/x.git").startswith("file_srv_git_x.git-")
