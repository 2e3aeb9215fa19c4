"""periphery.ops.envfile: the env file written as Komodo writes it (``lib/environment``,
``write_env_file``) and passed on in Komodo's order (``api/compose.rs``, ``env_file_args``)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from periphery.exceptions import InvalidName
from periphery.ops.envfile import env_files, joined_env_file, write_env_file


def test_the_text_is_written_as_it_is_private_and_over_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".env").symlink_to(outside)
    text = "A=\"quoted # kept\"\nB=${A}-$$\nC='x y'\n"
    assert write_env_file(run_dir / ".env", text) is True
    path = run_dir / ".env"
    assert not path.is_symlink()
    assert path.read_text() == text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert outside.read_text() == "keep\n"
    assert [p.name for p in run_dir.iterdir()] == [".env"]


def test_no_variables_no_file_but_one_already_there_is_passed_on(tmp_path: Path) -> None:
    """``write_env_file``: "Still want to return Some(env_file_path) if the path already
    exists on the host and is a file" (a files-on-host stack whose author writes it)."""
    assert write_env_file(tmp_path / ".env", "") is False
    assert not (tmp_path / ".env").exists()
    (tmp_path / ".env").write_text("MINE=1\n")
    assert write_env_file(tmp_path / ".env", "") is True
    assert (tmp_path / ".env").read_text() == "MINE=1\n"
    with pytest.raises(InvalidName):
        write_env_file(tmp_path / "x.env", "A=\x00\n")


def test_env_file_order() -> None:
    """``env_file_args``: additional files (but Komodo's own) in order, then its own last."""
    assert env_files(".env", ["../global.env", "secrets.env"]) == [
        "../global.env",
        "secrets.env",
        ".env",
    ]
    assert env_files(".env", ["a.env", ".env", "b.env"]) == ["a.env", "b.env", ".env"]
    assert env_files("", ["a.env", ".env"]) == ["a.env", ".env"]
    assert env_files("", []) == []


def test_compose_v1_gets_the_files_joined_in_order(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("X=a\nY=a")
    (tmp_path / "b.env").write_text("Y=b\n")
    dest = tmp_path / "state" / "st.env"
    joined = joined_env_file(dest, [tmp_path / "a.env", tmp_path / "b.env"])
    assert joined == dest
    assert dest.read_text() == "X=a\nY=a\nY=b\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
