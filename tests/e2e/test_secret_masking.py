"""Secrets never leave in clear (issue 12, item 4): a real core and a real agent deploy stacks
whose ``pre_deploy`` prints a core secret in each shape that once got past the masking, then
fails. For each shape, the secret is in none of: the core's log, its SQLite files (the WAL
included, read while the core runs), the API's answers (run, deploy, log, stacks, reconcile),
and the events; and the output shows ``***`` where the secret was.

The shapes: a secret printed in two writes (split), a multi-line PEM key (whole, indented line
by line, one line on stderr), a value with backslashes in a single-quoted command (the echoed
command line shows it as written; a timeout's reason quotes the command as a shell would), and
a line longer than the periphery's 64 KiB cut with the secret across the cut.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from core.client import CoreClient
from protocol.keys import PrivateKey
from tests.support.events import watch
from tests.support.processes import CoreProcess, Periphery, make_key, toml_value

SPLIT = "split-" + secrets.token_hex(12)
PEM = PrivateKey.generate("masking test").openssh_pem().decode()
BACKSLASH = f"bs\\{secrets.token_hex(6)}\\tail\\n"
LONG = "long-" + secrets.token_hex(16)
CUT = 64 * 1024
X_BEFORE = CUT - 6  # the 64 KiB cut falls after the secret's sixth character

COMMANDS = {
    "split": (
        "s='[[SPLIT]]'; printf 'token %.10s' \"$s\"; sleep 0.3;"
        " printf '%s\\n' \"${s#??????????}\"; exit 1"
    ),
    # shell_mode: the key's lines stay one quoted word
    "pem": (
        "printf '%s\\n' '[[PEM]]'; printf '%s\\n' '[[PEM]]' | sed 's/^/  | /';"
        " printf '%s\\n' '[[PEM]]' | sed -n 2p >&2; exit 1"
    ),
    "backslash": "printf 'bs is %s\\n' '[[BACKSLASH]]'; exit 1",
    # the timeout's reason names the command: as a shell would quote it, masked there too
    "timeout": "printf 'waiting for %s\\n' '[[BACKSLASH]]'; sleep 30",
    "long": (
        f"head -c {X_BEFORE} /dev/zero | tr '\\0' x; printf '%s' '[[LONG]]';"
        " head -c 1000 /dev/zero | tr '\\0' y; sleep 0.3; echo; exit 1"
    ),
}


SECRET_OF = {
    "split": SPLIT,
    "pem": PEM,
    "backslash": BACKSLASH,
    "timeout": BACKSLASH,
    "long": LONG,
}


def forms(shape: str) -> list[str]:
    """What must not be found: the value, its escaped forms, and its parts."""
    value = SECRET_OF[shape]
    out = [value, json.dumps(value)[1:-1], repr(value)[1:-1]]
    if shape == "split":
        out += [SPLIT[:10], SPLIT[10:]]
    if shape == "pem":
        out += [line for line in PEM.splitlines() if "PRIVATE KEY" not in line]
    if shape == "long":
        out += [LONG[6:] + "y"]  # what follows the cut
    return out


@dataclass
class Lab:
    core: CoreProcess
    agent: Periphery
    run: dict[str, Any]

    def client(self) -> CoreClient:
        return CoreClient(self.core.url, self.core.token, timeout=30)


def resource_file(key_line: str) -> str:
    out = ['[[server]]\nname = "manager"\n[server.config]\npublic_key = ' + toml_value(key_line)]
    for shape, command in COMMANDS.items():
        shell = ", shell_mode = true" if shape == "pem" else ""
        out.append(
            f'[[stack]]\nname = "mask-{shape}"\ndeploy = true\n[stack.config]\n'
            f'server = "manager"\nfile_contents = "services: {{}}"\n'
            f"pre_deploy = {{ command = {toml_value(command)}{shell} }}"
        )
    return "\n\n".join(out) + "\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("masking")
    core_keys = make_key(tmp / "core.key")
    core = CoreProcess(
        tmp / "core",
        core_keys,
        secrets.token_hex(12),
        reconcile="manual",
        pre_deploy_timeout=2,
        secrets={"SPLIT": SPLIT, "PEM": PEM, "BACKSLASH": BACKSLASH, "LONG": LONG},
    )
    core.start_and_wait()
    agent = Periphery(
        tmp / "agent",
        core_keys,
        listen="",
        core_address=f"ws://127.0.0.1:{core.port}",
        server_name="manager",
        reconnect_initial_delay=0.1,
        reconnect_max_delay=0.5,
    )
    agent.start_and_wait()
    core.resources.write_text(resource_file(agent.keys.public.openssh_line()))

    async def deploy() -> dict[str, Any]:
        async with CoreClient(core.url, core.token, timeout=30) as client:
            applied = await client.sync()
            return await client.wait_run(applied["run"], within=60)

    try:
        run = anyio.run(deploy)
        yield Lab(core, agent, run)
    finally:
        agent.stop()
        core.stop()


def found(shape: str, text: str) -> list[str]:
    return [f for f in forms(shape) if f in text]


SHAPES = list(COMMANDS)
pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("shape", SHAPES)
async def test_the_secret_is_masked_in_the_output_and_the_failure(lab: Lab, shape: str) -> None:
    [deploy] = [d for d in lab.run["deploys"] if d["stack"] == f"mask-{shape}"]
    assert deploy["status"] == "failed" and deploy["failed_step"] == "pre_deploy", deploy
    async with lab.client() as client:
        lines = await client.log(deploy["id"])
        status, detail = await client.request("GET", f"/api/deploys/{deploy['id']}")
    assert status == 200
    text = "".join(line["text"] for line in lines)
    assert not found(shape, text), text[-2000:]
    echo = next(line["text"] for line in lines if line["text"].startswith("$ "))
    if shape == "backslash":  # the command as written, the secret masked
        assert echo.startswith("$ printf 'bs is %s\\n' '***'; exit 1  (in "), echo
        assert "bs is ***\n" in text
    elif shape == "split":
        assert "token ***\n" in text
    elif shape == "pem":
        assert "\n***\n" in text  # the whole key
        indented = [line["text"] for line in lines if line["text"].startswith("  | ")]
        assert indented and all(t.strip() in ("| ***", "|") for t in "".join(indented).splitlines())
        stderr = "".join(line["text"] for line in lines if line["stream"] == "stderr")
        assert stderr == "***\n"
    elif shape == "long":
        assert "x" * X_BEFORE + "***" + "y" * 1000 + "\n" in text
    elif shape == "timeout":
        assert "waiting for ***\n" in text
        command, _, last = deploy["reason"].partition("last output:")
        assert "timed out" in command and "'***'" in command, deploy["reason"]
        assert "waiting for ***" in last
    blob = json.dumps(detail)
    assert "last output" in blob and not found(shape, blob) and not found(shape, str(detail))


@pytest.mark.parametrize("shape", SHAPES)
async def test_the_secret_is_in_no_log_file_answer_or_event(lab: Lab, shape: str) -> None:
    assert not found(shape, "\n".join(lab.core.lines)), "the core's log"
    assert any("mask-" in line and "failed" in line for line in lab.core.lines)
    data = lab.core.workdir / "data"
    files = sorted(p for p in data.rglob("*") if p.is_file())
    assert any(p.name.endswith("-wal") for p in files), files  # read while the core runs
    for path in files:
        raw = path.read_bytes().decode("utf-8", "replace")
        assert not found(shape, raw), path
    async with lab.client() as client:
        answers = [
            await client.run(lab.run["id"]),
            await client.stacks(),
            await client.stack(f"mask-{shape}"),
            await client.reconcile(),
        ]
        for d in lab.run["deploys"]:
            answers.append(await client.request("GET", f"/api/deploys/{d['id']}"))
            answers.append(await client.log(d["id"]))
    for answer in answers:
        assert not found(shape, json.dumps(answer)) and not found(shape, str(answer))
    async with watch(lab.core.url, lab.core.token, "since=0") as watcher:
        with anyio.fail_after(10):
            while not watcher.controls:  # noqa: ASYNC110 (the replay, then "live")
                await anyio.sleep(0.05)
    kinds = {e["kind"] for e in watcher.events}
    assert {"deploy.output", "deploy.step", "deploy.finished"} <= kinds, kinds
    for event in watcher.events:
        assert not found(shape, json.dumps(event)), event["kind"]


def test_the_forms_looked_for_are_real() -> None:
    """What the tests above look for is long enough to be found only where the secret is."""
    assert all(len(f) >= 6 for shape in SHAPES for f in forms(shape))
    assert "\\\\" in forms("backslash")[1]
