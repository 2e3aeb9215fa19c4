"""``stackward host install``'s pure parts: the target URL, the settings, the texts, the wheel."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

from core.cli import main
from core.exceptions import HostInstallError
from core.hosts.spec import (
    InstallSpec,
    SshTarget,
    install_script,
    parse_target,
    render_periphery_toml,
    render_server_block,
    render_supervisor,
    render_systemd_unit,
    wrap_command,
)
from core.hosts.wheel import build_wheel
from core.resources.loader import load_text
from periphery.config import load_config
from protocol.keys import PrivateKey

CORE_KEY = PrivateKey.generate("core").public_key.openssh_line()


def spec(**changes: object) -> InstallSpec:
    values: dict[str, object] = {
        "name": "nas",
        "target": SshTarget("admin", "nas.lan"),
        "core_keys": (CORE_KEY,),
    }
    values.update(changes)
    return InstallSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ssh://root@10.0.0.5", SshTarget("root", "10.0.0.5", 22)),
        ("ssh://admin@nas.lan:2222", SshTarget("admin", "nas.lan", 2222)),
        ("ssh://deploy@[fd00::7]:22/", SshTarget("deploy", "fd00::7", 22)),
    ],
)
def test_targets_parse(url: str, expected: SshTarget) -> None:
    assert parse_target(url) == expected


def test_a_target_prints_back_as_its_url() -> None:
    assert str(SshTarget("a", "fd00::7", 2222)) == "ssh://a@[fd00::7]:2222"
    assert str(SshTarget("a", "h")) == "ssh://a@h"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("root@host", "ssh://USER@HOST"),
        ("http://root@host", "ssh://USER@HOST"),
        ("ssh://host", "name the SSH user"),
        ("ssh://root:pw@host", "no path, password"),
        ("ssh://root@host/opt", "no path, password"),
        ("ssh://root@host:0", "port"),
        ("ssh://root@host:99999", "port"),
        ("ssh://root@host:ab", "port"),
        ("ssh://ro;ot@host", "not a valid user name"),
        ("ssh://root@", "no host"),
    ],
)
def test_bad_targets_are_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(HostInstallError, match=says):
        parse_target(url)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"name": "a b"}, "--name"),
        ({"core_keys": ()}, "--core-key"),
        ({"directory": "opt/stackward"}, "--dir"),
        ({"directory": "/opt/stack ward"}, "--dir"),
        ({"directory": "/opt/$(reboot)"}, "--dir"),
        ({"root_directory": "/var/../etc"}, "--root-directory"),
        ({"directory": "/"}, "--dir"),
        ({"listen": "8120"}, "--listen"),
        ({"address": "https://nas:8120"}, "--address"),
        ({"python": "python3 -I"}, "--python"),
        ({"tls_cert": "/etc/stackward/tls.crt"}, "--tls-cert and --tls-key"),
        ({"tls_cert": "tls.crt", "tls_key": "tls.key"}, "--tls-cert"),
        # re.fullmatch: a trailing newline would split the unit's ExecStart= line
        ({"name": "nas\n"}, "--name"),
        ({"service": "agent\n"}, "--service"),
        ({"directory": "/opt/stackward\n"}, "--dir"),
        ({"tls_cert": "/etc/t.crt\n", "tls_key": "/etc/t.key"}, "--tls-cert"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object], says: str) -> None:
    with pytest.raises(HostInstallError, match=says):
        spec(**changes)


def test_the_core_dials_the_ssh_host_on_the_listen_port_unless_told() -> None:
    assert spec().core_address == "ws://nas.lan:8120/ws"
    assert spec(listen="0.0.0.0:9000").core_address == "ws://nas.lan:9000/ws"
    ipv6 = spec(target=SshTarget("a", "fd00::7"))
    assert ipv6.core_address == "ws://[fd00::7]:8120/ws"
    assert spec(address="wss://nas.example:443/ws").core_address == "wss://nas.example:443/ws"
    tls = spec(tls_cert="/etc/stackward/tls.crt", tls_key="/etc/stackward/tls.key")
    assert tls.core_address == "wss://nas.lan:8120/ws"
    assert 'tls_cert = "/etc/stackward/tls.crt"' in render_periphery_toml(tls)


def test_the_rendered_config_loads_in_the_agent(tmp_path: Path) -> None:
    other = PrivateKey.generate("old core").public_key.openssh_line()
    s = spec(
        directory=str(tmp_path / "opt"),
        root_directory=str(tmp_path / "root"),
        listen="127.0.0.1:8121",
        core_keys=(CORE_KEY, other),
    )
    (tmp_path / "opt").mkdir()
    Path(s.key_path).write_bytes(PrivateKey.generate().openssh_pem())
    Path(s.key_path).chmod(0o600)  # as `keys new` writes it on the host
    Path(s.config_path).write_text(render_periphery_toml(s))
    loaded = load_config(Path(s.config_path))
    assert [k.openssh_line() for k in loaded.core_keys] == [CORE_KEY, other]
    assert (loaded.listen_host, loaded.listen_port) == ("127.0.0.1", 8121)
    assert loaded.root == tmp_path / "root"


def test_the_server_block_is_a_resource_the_core_loads() -> None:
    agent = PrivateKey.generate("stackward@nas").public_key.openssh_line()
    text = render_server_block("nas", "ws://nas.lan:8120/ws", agent)
    rs = load_text(text, "servers/nas.toml")
    assert [f for f in rs.findings if f.severity == "error"] == []
    assert set(rs.resources) == {("server", "nas")}
    config = tomllib.loads(text)["server"][0]["config"]
    assert config == {"address": "ws://nas.lan:8120/ws", "public_key": agent}


def test_names_and_keys_with_quotes_stay_inside_their_strings() -> None:
    text = render_server_block("nas", 'ws://x"y/ws', 'ssh-ed25519 AAAA "c"\nz')
    assert tomllib.loads(text)["server"][0]["config"]["public_key"] == 'ssh-ed25519 AAAA "c"\nz'


def test_the_scripts_are_valid_sh_and_quote_every_path() -> None:
    s = spec(directory="/srv/stack+ward@1", python="/usr/bin/python3.11", sudo=True)
    script = install_script(s, "/tmp/stage $x", "stackward-0.1.0-py3-none-any.whl")
    for text in (script, render_supervisor(s)):
        done = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert "cp '/tmp/stage $x/periphery.toml' /srv/stack+ward@1/periphery.toml" in script
    assert "--system-site-packages" not in script
    assert wrap_command(s, "/tmp/x y/install.sh") == "sudo -n sh '/tmp/x y/install.sh'"
    unit = render_systemd_unit(s)
    assert "ExecStart=/srv/stack+ward@1/venv/bin/stackward periphery --config" in unit


def test_offline_installs_skip_the_dependencies_and_borrow_the_hosts_pip() -> None:
    script = install_script(spec(system_site_packages=True, no_deps=True), "/tmp/s", "w.whl")
    assert "-m venv --system-site-packages --without-pip" in script
    assert script.count("-m pip install") == 1 and "--no-deps" in script
    online = install_script(spec(), "/tmp/s", "w.whl")
    assert online.count("-m pip install") == 2


def test_the_wheel_holds_the_packages_and_a_valid_record() -> None:
    wheel = build_wheel()
    assert wheel.filename.startswith("stackward-") and wheel.filename.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(io.BytesIO(wheel.data)) as archive:
        names = archive.namelist()
        assert {"core/cli/host_cmd.py", "periphery/main.py", "protocol/keys.py"} <= set(names)
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        assert "Requires-Dist: aiohttp" in metadata and "pytest" not in metadata
        assert "stackward = core.cli:main" in archive.read(f"{dist_info}/entry_points.txt").decode()
        for row in archive.read(f"{dist_info}/RECORD").decode().splitlines():
            name, digest, size = row.split(",")
            if not digest:
                continue
            data = archive.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + expected.decode() and int(size) == len(data), name
    assert build_wheel().data == wheel.data  # the same tree gives the same bytes


@pytest.mark.parametrize(
    "argv",
    [
        ["http://root@h", "--name", "nas"],
        ["ssh://root@h", "--name", "bad name"],
        ["ssh://root@h", "--name", "nas", "--host-key-fingerprint", "MD5:aa"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["host", "install", *argv, "--core-key", CORE_KEY]) == 2
    assert capsys.readouterr().err.startswith("stackward host install: ")
