"""The bootstrap's config and secret sources: clear errors naming file and key; values unseen."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.bootstrap.config import SecretSpec, load_bootstrap_config
from core.bootstrap.sources import read_secret
from core.bootstrap.steps import core_url
from core.config import CoreConfig
from core.exceptions import BootstrapFailed, ConfigError

MINIMAL = """state_dir = "state"
stacks = ["caddy"]
[periphery]
config = "periphery.toml"
[core]
config = "/etc/stackward/core.toml"
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "bootstrap.toml"
    path.write_text(text)
    return load_bootstrap_config(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_a_minimal_config_with_paths_from_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.toml"
    path.write_text(MINIMAL + '[[secret]]\nname = "db"\nfile = "db.txt"\n')
    cfg = load_bootstrap_config(path)
    assert cfg.state_dir == str(tmp_path / "state")
    assert cfg.periphery.config == str(tmp_path / "periphery.toml")
    assert cfg.core.config == "/etc/stackward/core.toml"
    assert cfg.server == "manager" and cfg.core.sync == "local"
    assert cfg.secret[0].file == str(tmp_path / "db.txt")
    assert cfg.source == str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('state_dir = "s"\n[core]\nconfig = "c"\n', 'key "periphery": required'),
        (
            'state_dir = "s"\n[periphery]\n[core]\nconfig = "c"\n',
            'key "periphery.config": required',
        ),
        ("colour = 1\n" + MINIMAL, 'key "colour": unknown key'),
        (MINIMAL.replace("[core]", "[core]\nimage = 3"), 'key "core.image": Expected `str`'),
        (MINIMAL + '[[secret]]\nname = "db"\n', "key \"secret[0]\": secret 'db': give exactly"),
        (
            MINIMAL + '[[secret]]\nname = "db"\nenv = "A"\nfile = "f"\n',
            "give exactly one of env, file, stdin",
        ),
        (MINIMAL + '[[secret]]\nname = "-rm"\nenv = "A"\n', 'key "secret[0].name"'),
        (
            MINIMAL
            + '[[secret]]\nname = "a"\nstdin = true\n[[secret]]\nname = "b"\nstdin = true\n',
            "only one secret can be read from stdin",
        ),
        (
            MINIMAL + '[[secret]]\nname = "a"\nenv = "A"\n[[secret]]\nname = "a"\nenv = "B"\n',
            "listed twice",
        ),
        (MINIMAL.replace('["caddy"]', '["caddy", "caddy"]'), 'key "stacks": a stack is listed'),
        ("stack_timeout = 0\n" + MINIMAL, 'key "stack_timeout"'),
        ("state_dir = \n", "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error(tmp_path, text)
    assert message.startswith(str(tmp_path / "bootstrap.toml") + ":"), message
    assert expected in message, message


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_bootstrap_config(tmp_path / "nope.toml")


def no_stdin() -> bytes:
    raise AssertionError("stdin must not be read")


def test_secret_sources(tmp_path: Path) -> None:
    (tmp_path / "v").write_bytes(b"from-a-file\n")
    env = {"DB": "from-env\n"}
    assert read_secret(SecretSpec(name="a", env="DB"), env, no_stdin) == b"from-env\n"
    file_spec = SecretSpec(name="a", file=str(tmp_path / "v"))
    assert read_secret(file_spec, {}, no_stdin) == b"from-a-file"
    assert read_secret(SecretSpec(name="a", stdin=True), {}, lambda: b"typed\r\n") == b"typed"


def test_a_missing_or_empty_source_names_the_step_and_not_the_value(tmp_path: Path) -> None:
    with pytest.raises(BootstrapFailed) as caught:
        read_secret(SecretSpec(name="db", env="DB_PASSWORD"), {}, no_stdin)
    assert caught.value.step == "secrets"
    assert "DB_PASSWORD is not set" in str(caught.value)
    assert "export DB_PASSWORD" in caught.value.hint
    with pytest.raises(BootstrapFailed, match="cannot read"):
        read_secret(SecretSpec(name="db", file=str(tmp_path / "none")), {}, no_stdin)
    with pytest.raises(BootstrapFailed, match="is empty"):
        read_secret(SecretSpec(name="db", stdin=True), {}, lambda: b"\n")


def test_the_core_is_asked_on_loopback_when_it_listens_everywhere() -> None:
    def url(listen: str) -> str:
        return core_url(CoreConfig(data_dir="d", listen=listen))

    assert url("0.0.0.0:9120") == "http://127.0.0.1:9120"
    assert url("10.0.0.5:9000") == "http://10.0.0.5:9000"
    assert url("[::]:9120") == "http://[::1]:9120"


CORE = 'data_dir = "d"\napi_tokens = ["a-token-long-enough-1234"]\n'


def test_the_core_keeps_swarm_secrets_from_its_own_secrets(tmp_path: Path) -> None:
    from core.config import load_config

    path = tmp_path / "core.toml"
    path.write_text(CORE + '[secrets]\nDB = "x"\n[swarm_secrets]\ndb_password = "DB"\n')
    assert load_config(path).swarm_secrets == {"db_password": "DB"}
    path.write_text(CORE + '[secrets]\nDB = "x"\n[swarm_secrets]\ndb_password = "NOPE"\n')
    with pytest.raises(ConfigError, match=r'key "swarm_secrets.db_password": \'NOPE\' is not'):
        load_config(path)
    path.write_text(CORE + '[secrets]\nDB = "x"\n[swarm_secrets]\n"-x" = "DB"\n')
    with pytest.raises(ConfigError, match='key "swarm_secrets.-x"'):
        load_config(path)


def test_plain_secrets_and_networks(tmp_path: Path) -> None:
    """Fixed-name swarm secrets and overlay networks, as the reference homelab makes by hand."""
    cfg = load(
        tmp_path,
        'networks = ["proxy", "monitoring"]\n'
        + MINIMAL
        + '[[secret]]\nname = "proxy_token"\nenv = "PROXY_TOKEN"\nplain = true\n',
    )
    assert cfg.networks == ["proxy", "monitoring"]  # type: ignore[attr-defined]
    assert cfg.secret[0].plain is True  # type: ignore[attr-defined]
    assert 'key "networks[0]"' in error(tmp_path, 'networks = ["-x"]\n' + MINIMAL)


def test_core_external_objects_are_checked(tmp_path: Path) -> None:
    from core.config import load_config

    base = 'data_dir = "d"\napi_tokens = ["' + "t" * 16 + '"]\n'
    path = tmp_path / "core.toml"
    path.write_text(
        base
        + 'external_networks = ["proxy"]\n[secrets]\nT = "v"\n'
        + '[external_secrets]\nproxy_token = "T"\n'
    )
    cfg = load_config(path)
    assert cfg.external_networks == ["proxy"] and cfg.external_secrets == {"proxy_token": "T"}
    path.write_text(base + '[external_secrets]\nproxy_token = "MISSING"\n')
    with pytest.raises(ConfigError, match='external_secrets.proxy_token": .MISSING. is not a key'):
        load_config(path)
    path.write_text(base + 'external_networks = ["a b"]\n')
    with pytest.raises(ConfigError, match=r"external_networks\[0\]"):
        load_config(path)
