"""The agent's config: every problem names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from periphery.config import load_config
from periphery.exceptions import ConfigError
from tests.support.processes import make_key, write_toml


@pytest.fixture
def base(tmp_path: Path) -> dict[str, object]:
    make_key(tmp_path / "core.key")
    make_key(tmp_path / "agent.key")
    return {
        "private_key": "agent.key",
        "core_public_keys": ["core.key.pub"],
        "root_directory": "root",
    }


def load(tmp_path: Path, values: dict[str, object]):  # type: ignore[no-untyped-def]
    return load_config(write_toml(tmp_path / "periphery.toml", values))


def test_a_good_config_loads_with_defaults(tmp_path: Path, base: dict[str, object]) -> None:
    config = load(tmp_path, base)
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 8120)
    assert config.root == (tmp_path / "root").resolve() and config.root.is_dir()
    assert config.channel.heartbeat_interval == 10.0
    assert config.channel.max_frame_bytes == 16 * 1024 * 1024


def test_a_key_line_works_in_place_of_a_path(tmp_path: Path, base: dict[str, object]) -> None:
    line = (tmp_path / "core.key.pub").read_text().strip()
    config = load(tmp_path, {**base, "core_public_keys": [line]})
    assert config.core_keys[0].openssh_line().split()[1] == line.split()[1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"listen": 8120}, "key 'listen': expected `str`, got `int`"),
        ({"listen": "localhost"}, "key 'listen': 'localhost' is not HOST:PORT"),
        ({"private_key": "missing.key"}, "key 'private_key': cannot read"),
        ({"private_key": "core.key.pub"}, "key 'private_key': cannot load the private key"),
        ({"core_public_keys": []}, "key 'core_public_keys': list at least one"),
        ({"core_public_keys": ["nope.pub"]}, "key 'core_public_keys[0]': cannot read"),
        ({"core_public_keys": ["ssh-rsa AAAA"]}, "key 'core_public_keys[0]': the public key is"),
        ({"tls_cert": "cert.pem"}, "key 'tls_key': set both or neither"),
        ({"core_address": "http://core"}, "key 'core_address': must start with ws://"),
        ({"core_address": "ws://core:9120"}, "key 'server_name': required with core_address"),
        ({"lisen": "0.0.0.0:1"}, "key 'lisen': unknown key"),
        ({"heartbeat_interval": 0}, "key 'heartbeat_interval': must be greater than 0"),
    ],
)
def test_bad_values_name_file_and_key(
    tmp_path: Path, base: dict[str, object], change: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {**base, **change})
    assert str(tmp_path / "periphery.toml") in str(info.value)
    assert message in str(info.value)


def test_a_missing_required_key_is_named(tmp_path: Path, base: dict[str, object]) -> None:
    del base["root_directory"]
    with pytest.raises(ConfigError, match="key 'root_directory': required"):
        load(tmp_path, base)


def test_invalid_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "periphery.toml"
    path.write_text("listen = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
