from __future__ import annotations

import os
from pathlib import Path

import pytest

from periphery.exceptions import ForbiddenPath
from periphery.paths import confine


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
