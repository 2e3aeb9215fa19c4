from __future__ import annotations

import os
from pathlib import Path

import pytest

from periphery.exceptions import DeployError, ForbiddenPath, InvalidName
from periphery.ops.envfile import merge_env_files, parse_env_text


def test_env_text_is_read_as_compose_reads_it() -> None:
    text = "# comment\n\nA=1\nexport B = two\nC=\"x\\ny\"\nD='$literal'\nE=\n"
    assert parse_env_text(text, "f") == {
        "A": "1",
        "B": "two",
        "C": "x\ny",
        "D": "$literal",
        "E": "",
    }


def test_a_bad_line_names_the_file_and_line() -> None:
    with pytest.raises(InvalidName, match="extra.env:2: expected KEY=value"):
        parse_env_text("A=1\nnot a pair\n", "extra.env")


def test_files_merge_in_order_and_the_stack_environment_wins(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("X=a\nY=a\n")
    (tmp_path / "b.env").write_text("Y=b\nZ=b\n")
    merged = merge_env_files(tmp_path, ["a.env", "b.env"], {"Z": "stack"})
    assert merged == {"X": "a", "Y": "b", "Z": "stack"}


def test_relative_env_files_stay_inside_the_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "secret.env").write_text("S=1\n")
    with pytest.raises(ForbiddenPath):
        merge_env_files(run, ["../secret.env"], {})
    os.symlink(tmp_path / "secret.env", run / "link.env")
    with pytest.raises(ForbiddenPath):
        merge_env_files(run, ["link.env"], {})


def test_an_absolute_env_file_is_read_from_the_host_and_a_missing_one_is_named(
    tmp_path: Path,
) -> None:
    host = tmp_path / "host.env"
    host.write_text("H=host\n")
    assert merge_env_files(tmp_path, [str(host)], {}) == {"H": "host"}
    with pytest.raises(DeployError, match="env file 'nope.env'"):
        merge_env_files(tmp_path, ["nope.env"], {})
