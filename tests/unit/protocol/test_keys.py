from __future__ import annotations

import os
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


def test_rsa_pem_private_key_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(BadKey, match="not Ed25519"):
        parse_private_key(pem)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n", "no END line"),
        (
            b"-----BEGIN OPENSSH PRIVATE KEY-----\n!!\n-----END OPENSSH PRIVATE KEY-----\n",
            "base64 is malformed",
        ),
        (
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            "not an openssh-key-v1",
        ),
        (b"hello", "not a PEM or OpenSSH key file"),
    ],
)
def test_garbage_private_keys_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(BadKey, match=message):
        parse_private_key(data)


def test_a_truncated_private_key_is_refused() -> None:
    pem = PrivateKey.generate().openssh_pem().decode()
    lines = pem.splitlines()
    short = "\n".join([lines[0], *lines[1:-1][:2], lines[-1]]) + "\n"
    with pytest.raises(BadKey, match="truncated|malformed"):
        parse_private_key(short.encode())


@needs_ssh_keygen
def test_an_encrypted_key_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "enc"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(path)], check=True
    )
    with pytest.raises(BadKey, match="encrypted.*ssh-keygen -p"):
        parse_private_key(path.read_bytes())


@needs_ssh_keygen
def test_an_rsa_openssh_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(path)], check=True
    )
    with pytest.raises(BadKey, match="ssh-rsa, not Ed25519"):
        parse_private_key(path.read_bytes())


def test_rfc8032_vector_1() -> None:
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    key = PrivateKey(seed)
    assert key.public_key.raw.hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert key.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39"
        "701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


def test_libcrypto_and_cryptography_backends_agree() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from protocol import ed25519

    ours = ed25519.backend()
    assert ours.name == "libcrypto", "libcrypto should be usable on Debian"
    seed = os.urandom(32)
    reference = Ed25519PrivateKey.from_private_bytes(seed)
    signature = ours.sign(seed, b"message")
    assert signature == reference.sign(b"message")  # Ed25519 is deterministic
    reference.public_key().verify(signature, b"message")
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert not ours.verify(ours.public_from_seed(seed), tampered, b"message")
    assert not ours.verify(ours.public_from_seed(seed), signature[:10], b"message")


def test_private_key_repr_shows_no_secret() -> None:
    key = PrivateKey.generate()
    assert "PRIVATE" not in repr(key)
    assert key.public_key.fingerprint() in repr(key)


def test_private_key_permissions_as_openssh_decides() -> None:
    """authfile.c, sshkey_perm_ok: owned by the reader, no access for group or others."""
    from protocol.keys import permissions_problem

    for mode in (0o100600, 0o100400, 0o100700):
        assert permissions_problem("k", mode, 1000, 1000) is None
    for mode in (0o100644, 0o100640, 0o100604, 0o100601):
        problem = permissions_problem("/etc/k", mode, 1000, 1000)
        assert problem is not None and problem.endswith("(run: chmod 600 /etc/k)")
        assert f"permissions {mode & 0o777:04o} for /etc/k are too open" in problem
    assert permissions_problem("k", 0o100644, 0, 1000) is None  # another owner: as OpenSSH
