"""The agent's key rotation in two steps (periphery/keys.py; Komodo's RotatePrivateKey in
bin/periphery/src/api/keys.rs makes the new key on the periphery): prepare keeps the key in
use, commit installs the new one atomically; a prepare never committed is gone after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from periphery.keys import KeyHolder, RotationError
from protocol.keys import PrivateKey, parse_private_key
from protocol.messages import key_proof_data


def holder(tmp_path: Path) -> tuple[KeyHolder, PrivateKey]:
    key = PrivateKey.generate("agent")
    path = tmp_path / "periphery.key"
    path.write_bytes(key.openssh_pem())
    path.chmod(0o600)
    path.with_name("periphery.key.pub").write_text(key.public_key.openssh_line() + "\n")
    return KeyHolder(path, key), key


def test_prepare_keeps_the_key_in_use_and_commit_installs_the_new_one(tmp_path: Path) -> None:
    keys, old = holder(tmp_path)
    seen: list[PrivateKey] = []
    keys.on_change.append(seen.append)
    new = keys.prepare()
    assert (
        keys.current is old
        and parse_private_key(keys.path.read_bytes()).public_key == old.public_key
    )
    assert (keys.next_path.stat().st_mode & 0o777) == 0o600
    signature = keys.commit(new, b"nonce", key_proof_data)
    assert new.verify(signature, key_proof_data(new.wire, b"nonce"))
    assert parse_private_key(keys.path.read_bytes()).public_key == new
    assert (
        keys.path.with_name("periphery.key.pub").read_text().split()[:2]
        == new.openssh_line().split()[:2]
    )
    assert not keys.next_path.exists() and [k.public_key for k in seen] == [new]


def test_a_prepare_never_committed_is_dropped_at_start(tmp_path: Path) -> None:
    keys, old = holder(tmp_path)
    new = keys.prepare()
    again = KeyHolder(keys.path, parse_private_key(keys.path.read_bytes()))  # a restart
    assert not again.next_path.exists() and again.current.public_key == old.public_key
    with pytest.raises(RotationError, match="no such key was prepared"):
        again.commit(new, b"n", key_proof_data)
