from __future__ import annotations

import stat
from pathlib import Path

import pytest

from periphery.exceptions import InvalidName
from periphery.ops.envfile import quote, render, write_env_file


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("", ""),
        ("http://x:8080/a,b=c", "http://x:8080/a,b=c"),
        ("with space", "'with space'"),
        ("$NOT_EXPANDED", "'$NOT_EXPANDED'"),
        ('say "hi" #1', "'say \"hi\" #1'"),
        ("it's", '"it\'s"'),
        ("two\nlines", '"two\\nlines"'),
        ("it's $HOME \\", '"it\'s \\$HOME \\\\"'),
    ],
)
def test_quote(value: str, written: str) -> None:
    assert quote(value) == written


def test_render_keeps_order() -> None:
    assert render({"B": "1", "A": "x y"}) == "B=1\nA='x y'\n"


@pytest.mark.parametrize("key", ["1A", "A-B", "", "A B", "A=B"])
def test_render_refuses_bad_names(key: str) -> None:
    with pytest.raises(InvalidName):
        render({key: "v"})


def test_write_env_file_private_and_replaces_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".env").symlink_to(outside)
    path = write_env_file(run_dir, {"TOKEN": "s3cret"})
    assert path == run_dir.resolve() / ".env"
    assert not path.is_symlink()
    assert path.read_text() == "TOKEN=s3cret\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert outside.read_text() == "keep\n"
    assert [p.name for p in run_dir.iterdir()] == [".env"]


def test_write_env_file_refuses_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidName):
        write_env_file(tmp_path, {"A": "b"}, name="../x")
