"""``host install --server-file`` (core/hosts/serverfile.py and the CLI's writer): only the
``[[server]]`` of that name changes; every other byte of the file stays."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from core.cli.host_cmd import _write_server_file
from core.exceptions import HostInstallError
from core.hosts.serverfile import ServerFileError, marker, replace_server
from core.hosts.spec import render_server_block

OLD_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDOLDO old"
NEW_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINEWNEWNEWNEWNEWNEWNEWNEWNEWNEWNEWNEWNEWNEWN new"

BEFORE = """\
# Servers of the homelab   (hand-written: spacing and comments are mine)
tiers = ["infrastructure", "application"]

[[server]]
name = "nas"   # the NAS
[server.config]
address = "ws://nas:8120/ws"
public_key = "ssh-ed25519 AAAA-nas"

# The Pi, pinned by hand.
[[server]]
name = "pi"
[server.config]
address = "ws://pi:8120/ws"
public_key = "OLD"
[server.config.extra]
note = '''
[[server]]
name = "fake: inside a string"
'''

# after the pi: stays
[[stack]]
name = "web"
[stack.config]
server = "pi"
"""


def block(name: str, key: str = NEW_KEY) -> str:
    return render_server_block(name, f"ws://{name}:8120/ws", key)


def test_only_that_server_is_replaced_byte_for_byte() -> None:
    text = BEFORE.replace('"OLD"', f'"{OLD_KEY}"')
    after = replace_server(text, "pi", block("pi"))
    head, tail = text.split('[[server]]\nname = "pi"', 1)
    assert after.startswith(head)  # the comment above the pi's entry stays too
    assert after.endswith("\n\n# after the pi: stays\n" + text.split("# after the pi: stays\n")[1])
    assert marker("pi") + "\n" + block("pi") in after
    doc = tomllib.loads(after)
    assert [s["name"] for s in doc["server"]] == ["nas", "pi"]
    assert doc["server"][1]["config"] == {"address": "ws://pi:8120/ws", "public_key": NEW_KEY}
    assert doc["stack"] == tomllib.loads(text)["stack"]
    # again: the same bytes (the marker line goes with the entry, not one more each time)
    assert replace_server(after, "pi", block("pi")) == after


def test_a_new_server_is_appended_and_a_new_file_holds_the_block_alone() -> None:
    after = replace_server(BEFORE, "nuc", block("nuc"))
    assert after == BEFORE + "\n" + marker("nuc") + "\n" + block("nuc")
    assert replace_server("", "nuc", block("nuc")) == marker("nuc") + "\n" + block("nuc")
    no_newline = 'tiers = ["a"]'
    assert replace_server(no_newline, "n", block("n")).startswith('tiers = ["a"]\n\n# The')


def test_crlf_and_the_last_entry_of_the_file() -> None:
    text = BEFORE.replace("\n", "\r\n")
    after = replace_server(text, "nas", block("nas"))
    assert after.endswith(text[text.index("\r\n# The Pi") :])
    last = replace_server(BEFORE, "pi", block("pi"))
    trimmed = last[: last.index("# after the pi")]
    again = replace_server(trimmed, "pi", block("pi", OLD_KEY))
    assert again == trimmed.replace(NEW_KEY, OLD_KEY)  # the last entry: blank lines after it kept


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[server]\nname = 'x'", "not valid TOML"),
        ('[[server]]\nname = "pi"\n[[server]]\nname = "pi"\n', r"2 \[\[server\]\] entries"),
        ('server = [{ name = "pi", config = { public_key = "k" } }]\n', "could not be replaced"),
    ],
)
def test_what_cannot_be_replaced_alone_is_refused(text: str, says: str) -> None:
    with pytest.raises(ServerFileError, match=says):
        replace_server(text, "pi", block("pi"))


def test_the_writer_keeps_the_mode_and_never_follows_a_link(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text(BEFORE)
    path.chmod(0o640)
    said: list[str] = []
    _write_server_file(path, "pi", block("pi"), said.append)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert "had another key pinned; replaced" in said[0]
    assert tomllib.loads(path.read_text())["server"][1]["config"]["public_key"] == NEW_KEY
    # A symlink planted at PATH.tmp is refused, not followed; nothing written anywhere.
    target = tmp_path / "elsewhere"
    target.write_text("untouched\n")
    (tmp_path / "servers.toml.tmp").symlink_to(target)
    before = path.read_bytes()
    with pytest.raises(HostInstallError, match=r"servers.toml.tmp: a symlink is in the way"):
        _write_server_file(path, "pi", block("pi", OLD_KEY), said.append)
    assert target.read_text() == "untouched\n" and path.read_bytes() == before
    os.unlink(tmp_path / "servers.toml.tmp")
