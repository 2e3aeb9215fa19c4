from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from protocol.exceptions import BadKey
from protocol.keys import PrivateKey, PublicKey, parse_private_key, parse_public_key

needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="no ssh-keygen")


@needs_ssh_keygen
def test_ssh_keygen_keys_load_and_fingerprints_match(tmp_path: Path) -> None:
    path = tmp_path / "id"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@h", "-f", str(path)], check=True
    )
    private = parse_private_key(path.read_bytes())
    public = parse_public_key((tmp_path / "id.pub").read_text())
    assert private.public_key == public
    assert public.comment == "me@h"
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "id.pub")], check=True, capture_output=True, text=True
    ).stdout
    assert public.fingerprint() in printed


@needs_ssh_keygen
def test_our_keys_are_read_by_ssh_keygen(tmp_path: Path) -> None:
    key = PrivateKey.generate("x")
    path = tmp_path / "k"
    path.write_bytes(key.openssh_pem())
    path.chmod(0o600)
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(path)], check=True, capture_output=True, text=True
    ).stdout
    assert parse_public_key(derived) == key.public_key


def test_sign_and_verify() -> None:
    key = PrivateKey.generate()
    signature = key.sign(b"data")
    assert key.public_key.verify(signature, b"data")
    assert not key.public_key.verify(signature, b"other")
    assert not PrivateKey.generate().public_key.verify(signature, b"data")


def test_wire_round_trip() -> None:
    key = PrivateKey.generate().public_key
    assert PublicKey.from_wire(key.wire) == key
    assert parse_public_key(key.openssh_line()) == key


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ssh-rsa AAAAB3NzaC1yc2E= x", "not ssh-ed25519"),
        ("ssh-ed25519", "reads 'ssh-ed25519 AAAA"),
        ("ssh-ed25519 !!!notbase64", "malformed"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "not an ssh-ed25519 public key blob"),
    ],
)
def test_bad_public_keys(line: str, message: str) -> None:
    with pytest.raises(BadKey, match=message):
        parse_public_key(line)


def test_rsa_private_key_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    with pytest.raises(BadKey, match="not Ed25519"):
        parse_private_key(pem)


def test_garbage_private_key_is_refused() -> None:
    with pytest.raises(BadKey, match="cannot load"):
        parse_private_key(b"-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n")


def test_private_key_repr_shows_no_secret() -> None:
    key = PrivateKey.generate()
    assert "PRIVATE" not in repr(key)
    assert key.public_key.fingerprint() in repr(key)
