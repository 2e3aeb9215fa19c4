"""The core's config file: defaults, relative paths, tokens file, and errors naming file+key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import DEFAULT_LISTEN, load_config
from core.exceptions import ConfigError

TOKEN = "config-token-0123456789"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "core.toml"
    path.write_text(body)
    return path


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text(f"# one a line\n{TOKEN}2\n\n")
    cfg = load_config(
        write(
            tmp_path,
            f'data_dir = "data"\napi_tokens = ["{TOKEN}"]\napi_tokens_file = "tokens"\n'
            'resources = ["res", "/abs/res.toml"]\nprivate_key = "core.key"\n',
        )
    )
    assert cfg.listen == DEFAULT_LISTEN and (cfg.host, cfg.port) == ("0.0.0.0", 9120)
    assert cfg.data_dir == str(tmp_path / "data")
    assert cfg.resources == [str(tmp_path / "res"), "/abs/res.toml"]
    assert cfg.private_key == str(tmp_path / "core.key")
    assert cfg.api_tokens == [TOKEN, TOKEN + "2"]
    assert TOKEN not in repr(cfg)


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        (f'api_tokens = ["{TOKEN}"]', "data_dir", "required"),
        (f'data_dir = "d"\napi_tokens = ["{TOKEN}"]\nlisten = 9120', "listen", "Expected `str`"),
        (f'data_dir = "d"\napi_tokens = ["{TOKEN}"]\nlisten = "nohost"', "listen", "host:port"),
        (f'data_dir = "d"\napi_tokens = ["{TOKEN}"]\nlisen = "x"', "lisen", "unknown key"),
        ('data_dir = "d"', "api_tokens", "no API token"),
        ('data_dir = "d"\napi_tokens = ["short"]', "api_tokens", "shorter than 16"),
        ('data_dir = "d"\napi_tokens_file = "nope"', "api_tokens_file", "cannot read"),
        ("data_dir = ", "?", "not valid TOML"),
        (
            f'data_dir = "d"\napi_tokens = ["{TOKEN}"]\nimage_poll_interval = 0.2',
            "image_poll_interval",
            "at least 1",
        ),
        (
            f'data_dir = "d"\napi_tokens = ["{TOKEN}"]\nalert_retries = -1',
            "alert_retries",
            "at least 0",
        ),
        (f'data_dir = "d"\napi_tokens = ["{TOKEN}"]\nalert_queue = 0', "alert_queue", "at least 1"),
    ],
)
def test_errors_name_file_key_and_problem(
    tmp_path: Path, body: str, key: str, problem: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    if key != "?":
        assert f'key "{key}"' in message
    assert problem in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "absent.toml")
