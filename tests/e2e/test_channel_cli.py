"""The real CLI: ``keys new``, ``periphery`` with a bad config, ``exec`` end to end."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import KeyPair, stackward_argv, write_toml


def stackward(
    *args: str, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        stackward_argv(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_keys_new_writes_an_openssh_pair(tmp_path: Path) -> None:
    done = stackward("keys", "new", str(tmp_path / "sub" / "core"))
    assert done.returncode == 0, done.stderr
    private = tmp_path / "sub" / "core"
    public = tmp_path / "sub" / "core.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert done.stdout.startswith("ssh-ed25519 AAAA")
    assert done.stdout.strip() == public.read_text().strip()
    assert b"BEGIN OPENSSH PRIVATE KEY" in private.read_bytes()
    if shutil.which("ssh-keygen"):
        derived = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(private)], capture_output=True, text=True, check=True
        ).stdout
        assert derived.split()[:2] == done.stdout.split()[:2]
    again = stackward("keys", "new", str(private))
    assert again.returncode == 1 and "exists" in again.stderr


def test_keys_new_never_follows_a_link_at_its_temporary_or_public_path(tmp_path: Path) -> None:
    """O_EXCL | O_NOFOLLOW: a symlink planted at PATH.tmp (or PATH.pub.tmp) is refused, not
    followed; a symlink at PATH.pub is replaced, its target untouched."""
    target = tmp_path / "victim"
    target.write_text("untouched\n")
    key = tmp_path / "core"
    (tmp_path / "core.tmp").symlink_to(target)
    done = stackward("keys", "new", str(key))
    assert done.returncode == 1
    assert done.stderr == (
        f"stackward: cannot write {key}.tmp: a symlink is in the way (an interrupted write, or"
        " planted): remove it\n"
    )
    assert target.read_text() == "untouched\n" and not key.exists()
    (tmp_path / "core.tmp").unlink()
    (tmp_path / "core.pub").symlink_to(target)
    done = stackward("keys", "new", str(key), "--force")
    assert done.returncode == 0, done.stderr
    assert target.read_text() == "untouched\n"
    assert not (tmp_path / "core.pub").is_symlink()
    assert (tmp_path / "core.pub").read_text() == done.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_private_key_others_may_read_is_refused_with_the_chmod_to_run(
    core_keys: KeyPair, periphery_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """As OpenSSH refuses it (authfile.c, sshkey_perm_ok): exec, the agent and the core."""
    core_keys.path.chmod(0o644)
    periphery = periphery_factory.make()
    done = stackward(
        "exec",
        "--periphery",
        "ws://127.0.0.1:9/ws",
        "--key",
        str(core_keys.path),
        "--periphery-key",
        str(periphery.keys.pub_path),
        "--",
        "true",
    )
    too_open = (
        f"permissions 0644 for {core_keys.path} are too open: a private key must not be"
        f" accessible by group or others (run: chmod 600 {core_keys.path})"
    )
    assert (done.returncode, done.stderr) == (2, f"stackward exec: {too_open}\n")
    periphery.keys.path.chmod(0o640)
    agent = stackward("periphery", "--config", str(periphery.config_path), timeout=15)
    assert agent.returncode != 0 and "Traceback" not in agent.stderr
    assert f"key 'private_key': permissions 0640 for {periphery.keys.path}" in agent.stderr
    config = write_toml(
        tmp_path / "core.toml",
        {
            "listen": "127.0.0.1:0",
            "data_dir": "data",
            "private_key": str(core_keys.path),
            "api_tokens": ["0123456789abcdef0123"],
        },
    )
    core = stackward("core", "--config", str(config), timeout=15)
    assert core.returncode == 2 and too_open in core.stderr, core.stderr


def test_a_bad_periphery_config_names_file_and_key(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path / "periphery.toml",
        {"private_key": "nope.key", "core_public_keys": ["x.pub"], "root_directory": "r"},
    )
    done = stackward("periphery", "--config", str(config), timeout=15)
    assert done.returncode != 0
    assert f"{config}: key 'private_key': cannot read" in done.stderr
    assert "Traceback" not in done.stderr


def test_exec_streams_output_and_returns_the_remote_exit_code(
    core_keys: KeyPair, periphery_factory
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    done = stackward(
        "exec",
        "--periphery",
        periphery.url,
        "--key",
        str(core_keys.path),
        "--periphery-key",
        str(periphery.keys.pub_path),
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 42",
    )
    assert done.returncode == 42
    assert done.stdout == "out\n"
    assert done.stderr == "err\n"


def test_exec_takes_the_key_as_a_line_too(core_keys: KeyPair, periphery_factory) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    line = periphery.keys.public.openssh_line()
    done = stackward(
        "exec",
        "--periphery",
        periphery.url,
        "--key",
        str(core_keys.path),
        "--periphery-key",
        line,
        "--",
        "printf",
        "%s",
        "ok",
    )
    assert (done.returncode, done.stdout) == (0, "ok")


def test_exec_fails_with_255_and_one_line(
    core_keys: KeyPair, periphery_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    periphery = periphery_factory.start()
    wrong = periphery_factory.make("other").keys  # a key the periphery does not have
    refused = stackward(
        "exec",
        "--periphery",
        periphery.url,
        "--key",
        str(core_keys.path),
        "--periphery-key",
        str(wrong.pub_path),
        "--",
        "true",
    )
    assert refused.returncode == 255
    assert refused.stderr.count("\n") == 1 and "not the pinned key" in refused.stderr
    nobody = stackward(
        "exec",
        "--periphery",
        "ws://127.0.0.1:9/ws",
        "--key",
        str(core_keys.path),
        "--periphery-key",
        str(periphery.keys.pub_path),
        "--",
        "true",
    )
    assert nobody.returncode == 255
    assert nobody.stderr.count("\n") == 1 and "cannot connect" in nobody.stderr


@pytest.mark.parametrize("args", [[], ["--"]])
def test_exec_without_a_command_is_a_usage_error(core_keys: KeyPair, args: list[str]) -> None:
    done = stackward(
        "exec",
        "--periphery",
        "ws://127.0.0.1:9/ws",
        "--key",
        str(core_keys.path),
        "--periphery-key",
        str(core_keys.pub_path),
        *args,
    )
    assert done.returncode == 2
